import t from 'tap'
import type { FsOp } from '../src/spool/disk'
import { SpoolWriteError } from '../src/spool/errors'
import { tinyDisk } from './helpers/tiny-disk'
import { filesIn, message, openStore, tempDir } from './spool-helpers'

const eio = (op: string) => Object.assign(new Error(`EIO: i/o error, ${op}`), { code: 'EIO' })

for (const op of ['open', 'write', 'fsync', 'rename', 'dirsync'] as FsOp[]) {
  t.test(`an EIO at ${op} rejects with SpoolWriteError and leaves no file behind`, async (t) => {
    const dir = tempDir(t)
    let armed = true
    const { store } = await openStore(dir, {
      fault: (at) => {
        if (armed && at === op) throw eio(at)
      },
    })
    const err = await store.write(message()).catch((e: unknown) => e)
    t.ok(err instanceof SpoolWriteError, 'a SpoolWriteError')
    t.match(err, { code: 'ESPOOLWRITE', errno: 'EIO', op, cause: { code: 'EIO' } })
    t.same(filesIn(dir), [], op === 'dirsync' ? 'the renamed file is removed too' : 'the temp file is removed')
    t.match(store.stats(), { messages: 0, bytes: 0 })
    armed = false
    const ok = await store.write(message())
    t.same(filesIn(dir), [`${ok.id}.msg`], 'the next write works once the disk does')
  })
}

t.test('a failed update leaves the previous envelope in force', async (t) => {
  const dir = tempDir(t)
  let armed = false
  const { store } = await openStore(dir, {
    fault: (at) => {
      if (armed && at === 'fsync') throw eio(at)
    },
  })
  const e = await store.write(message())
  armed = true
  await t.rejects(store.update(e.id, { attempts: 9 }), { code: 'ESPOOLWRITE', errno: 'EIO' })
  t.equal(store.get(e.id)?.attempts, 0)
  t.same(filesIn(dir), [`${e.id}.msg`])
  t.equal((await openStore(dir)).store.get(e.id)?.attempts, 0)
})

t.test('a full disk (real ENOSPC on a 64 KiB tmpfs) rejects with SpoolWriteError and leaves no file', async (t) => {
  const tiny = await tinyDisk(t, '64k')
  if (tiny.path === null) {
    t.plan(0, tiny.why)
    return
  }
  const dir = tiny.path
  t.comment(`a 64 KiB tmpfs ${tiny.how}`)
  const { store } = await openStore(dir)
  const big = message(Buffer.alloc(200 * 1024, 0x61))
  const err = await store.write(big).catch((e: unknown) => e)
  t.ok(err instanceof SpoolWriteError)
  t.match(err, { code: 'ESPOOLWRITE', errno: 'ENOSPC', op: 'write' })
  t.same(filesIn(dir), [], 'no half-written file left on the full disk')
  const small = await store.write(message())
  t.same(filesIn(dir), [`${small.id}.msg`], 'the space came back: a small message still fits')
})
