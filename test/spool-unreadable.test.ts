// A spool file that cannot be read for now (EIO, EMFILE, EACCES) is not corrupt: it stays where it is, its message
// is retried, and only a file that stays unreadable is reported. Only proven corruption goes to quarantine/.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { message, openStore, tempDir } from './spool-helpers'

const fault = (code: string) => Object.assign(new Error(`${code}: simulated, read`), { code })
const quarantined = (dir: string) => fs.readdirSync(path.join(dir, 'quarantine'))
/** Far enough ahead that every backoff has passed. */
const later = () => Date.now() + 3_600_000

for (const code of ['EIO', 'EMFILE', 'EACCES']) {
  t.test(`a message file that cannot be read (${code}) is kept and resumed once it can be read`, async (t) => {
    const dir = tempDir(t)
    const { store: writer } = await openStore(dir)
    const e = await writer.write(message())
    let armed = true
    const { store, opened, lines } = await openStore(dir, {
      fault: (op, file) => {
        if (armed && op === 'read' && file.endsWith(`${e.id}.msg`)) throw fault(code)
      },
    })
    t.equal(opened.quarantined, 0, 'nothing quarantined')
    t.same(quarantined(dir), [], 'quarantine/ is empty')
    t.ok(fs.existsSync(path.join(dir, `${e.id}.msg`)), 'the file is where it was')
    t.equal(store.get(e.id), undefined, 'the message is not offered for delivery while it cannot be read')
    t.equal(store.stats().unreadable, 1, 'counted as unreadable')
    t.match(
      lines.filter((l) => l.msg.startsWith('cannot read a spool file')),
      [{ id: e.id, errno: code }],
      'one warning',
    )

    armed = false
    await store.retryUnreadable(later())
    t.same(store.get(e.id)?.to, e.to, 'resumed once readable')
    t.equal(store.stats().unreadable, 0)
    t.ok(lines.some((l) => l.msg === 'spool file readable again; message resumed'))
  })
}

t.test('a file that stays unreadable is reported once, at error level, and never quarantined', async (t) => {
  const dir = tempDir(t)
  const { store: writer } = await openStore(dir)
  const e = await writer.write(message())
  const { store, lines } = await openStore(dir, {
    fault: (op, file) => {
      if (op === 'read' && file.endsWith(`${e.id}.msg`)) throw fault('EIO')
    },
  })
  for (let i = 0; i < 6; i++) await store.retryUnreadable(later())
  const alerts = lines.filter((l) => /stays unreadable/.test(l.msg))
  t.equal(alerts.length, 1, 'one alert however often it is retried')
  t.match(alerts[0], { level: 50, id: e.id, errno: 'EIO' })
  t.equal(store.stats().unreadable, 1, 'still counted (the gauge mxgate_spool_unreadable_files)')
  t.same(quarantined(dir), [])
})

t.test('an unreadable newest envelope is waited for, not skipped for an older one', async (t) => {
  const dir = tempDir(t)
  const { store: writer } = await openStore(dir)
  const e = await writer.write(message(undefined, ['a@example.com', 'b@example.com']))
  await writer.update(e.id, { pending: ['b@example.com'], done: ['a@example.com'] })
  let armed = true
  const { store } = await openStore(dir, {
    fault: (op, file) => {
      if (armed && op === 'read' && file.endsWith('.1.env')) throw fault('EIO')
    },
  })
  t.equal(store.get(e.id), undefined, 'not indexed from the message header (a@ would be sent again)')
  t.same(quarantined(dir), [], 'the envelope is not quarantined')
  armed = false
  await store.retryUnreadable(later())
  t.same(store.get(e.id)?.pending, ['b@example.com'], 'resumed from the newest envelope')
})

t.test('a read error at delivery leaves the file alone; a corrupt body is still quarantined', async (t) => {
  const dir = tempDir(t)
  let armed = true
  const { store } = await openStore(dir, {
    fault: (op) => {
      if (armed && op === 'read') throw fault('EIO')
    },
  })
  armed = false
  const e = await store.write(message())
  armed = true
  await t.rejects(store.readBody(e.id), { code: 'EIO' })
  t.ok(store.get(e.id), 'still indexed')
  t.same(quarantined(dir), [])
  armed = false
  const file = path.join(dir, `${e.id}.msg`)
  const bytes = fs.readFileSync(file)
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 2) ^ 0xff, bytes.length - 2)
  fs.writeFileSync(file, bytes)
  await t.rejects(store.readBody(e.id), { code: 'ESPOOLCORRUPT' })
  t.equal(quarantined(dir).length, 1, 'proven corruption is quarantined')
})

t.test('a refresh of a shared spool leaves an unreadable file to its backoff', async (t) => {
  const dir = tempDir(t)
  const { store: writer } = await openStore(dir)
  const e = await writer.write(message())
  const reads: string[] = []
  let armed = true
  const { store } = await openStore(dir, {
    fault: (op, file) => {
      if (op !== 'read' || !file.endsWith(`${e.id}.msg`)) return
      reads.push(file)
      if (armed) throw fault('EIO')
    },
  })
  t.equal(reads.length, 1, 'read once at open, and failed')
  // Another process writes meanwhile: each refresh indexes what is new, and does not read the unreadable one again.
  for (let i = 0; i < 5; i++) {
    await writer.write(message())
    await store.refresh()
  }
  t.equal(reads.length, 1, 'five refreshes within its backoff did not read it again')
  armed = false
  await store.retryUnreadable(later())
  t.equal(reads.length, 2, 'its backoff over, it is read again')
  t.same(store.get(e.id)?.to, e.to, 'and resumed')
})
