import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { HOST_TAG } from '../src/spool/disk'
import { deadPid, message, openStore, spawnChild, tempDir } from './spool-helpers'

async function spoolWith(t: Test, n: number) {
  const dir = tempDir(t)
  const { store, lines } = await openStore(dir, { fsync: false })
  const ids: string[] = []
  for (let i = 0; i < n; i++) ids.push((await store.write(message())).id)
  return { dir, store, lines, ids }
}

/** Start `n` claim children on `ids`, release them at once, return who won each id. */
async function race(t: Test, dir: string, ids: string[], n: number): Promise<Map<string, string[]>> {
  const children = Array.from({ length: n }, (_, i) => spawnChild(t, ['claim', dir, `child${i}`, ...ids]))
  await Promise.all(children.map((c) => c.waitFor((l) => l === 'ready')))
  for (const c of children) c.send('go')
  await Promise.all(children.map((c) => c.waitFor((l) => l === 'done')))
  const winners = new Map<string, string[]>(ids.map((id) => [id, []]))
  children.forEach((c, i) => {
    for (const line of c.lines.filter((l) => l.startsWith('{'))) {
      const r = JSON.parse(line) as { id: string; won: boolean }
      if (r.won) winners.get(r.id)?.push(`child${i}`)
    }
  })
  for (const c of children) c.send('exit')
  await Promise.all(children.map((c) => c.exited))
  return winners
}

t.test('two processes claiming the same messages at once: exactly one wins each', async (t) => {
  const { dir, ids } = await spoolWith(t, 40)
  const winners = await race(t, dir, ids, 2)
  for (const [id, who] of winners) t.equal(who.length, 1, `${id} won by ${who.join(',') || 'nobody'}`)
})

t.test('a claim held by a live process is refused; once that process dies it can be taken', async (t) => {
  const { dir, store, ids, lines } = await spoolWith(t, 1)
  const id = ids[0]!
  const child = spawnChild(t, ['claim', dir, 'holder', id])
  await child.waitFor((l) => l === 'ready')
  child.send('go')
  t.equal(await child.waitFor((l) => l.startsWith('{')), JSON.stringify({ id, won: true }))
  t.equal(await store.claim(id, 'parent'), null, 'holder alive: refused')
  child.proc.kill('SIGKILL')
  await child.exited
  const claim = await store.claim(id, 'parent')
  t.match(claim, { id, owner: 'parent', pid: process.pid }, 'holder dead: taken over')
  t.ok(lines.some((l) => l.msg === 'took over a stale claim' && l.previousOwner === 'holder'))
  t.equal(await store.claim(id, 'again'), null, 'and now held by us')
  await store.release(claim!)
  t.ok(await store.claim(id, 'after-release'), 'free again after release')
})

t.test('several processes taking over the same stale claims: exactly one wins each', async (t) => {
  const { dir, ids } = await spoolWith(t, 20)
  const pid = deadPid()
  for (const id of ids) {
    const rec = { owner: 'crashed', pid, host: HOST_TAG, at: Date.now(), token: 'deadbeef' }
    fs.writeFileSync(path.join(dir, 'claims', `${id}.claim`), JSON.stringify(rec))
  }
  const winners = await race(t, dir, ids, 3)
  for (const [id, who] of winners) t.equal(who.length, 1, `${id} won by ${who.join(',') || 'nobody'}`)
})

t.test('a claim past its lease is taken over; the old holder then cannot release the new claim', async (t) => {
  const dir = tempDir(t)
  const a = (await openStore(dir, { claimLeaseMs: 60_000 })).store
  const b = (await openStore(dir, { claimLeaseMs: 20 })).store
  const { id } = await a.write(message())
  await b.refresh()
  const old = await a.claim(id, 'a')
  t.ok(old)
  t.equal(await b.claim(id, 'b', old!.at + 20), null, 'within the lease: refused (same pid, alive)')
  const stolen = await b.claim(id, 'b', old!.at + 21)
  t.ok(stolen, 'past the lease: taken over')
  await a.release(old!)
  t.equal(await a.claim(id, 'c'), null, "the old holder's release left the new claim alone")
  await b.release(stolen!)
  t.ok(await a.claim(id, 'c'))
})

t.test('claiming a message another process already removed returns null', async (t) => {
  const dir = tempDir(t)
  const a = (await openStore(dir)).store
  const b = (await openStore(dir)).store
  const { id } = await a.write(message())
  await b.refresh()
  await a.remove(id)
  t.equal(await b.claim(id, 'b'), null)
  t.equal(b.get(id), undefined, 'and forgets it')
  t.same(fs.readdirSync(path.join(dir, 'claims')), [], 'no claim file left behind')
})

t.test('open() sweeps claims of removed messages whose holder died', async (t) => {
  const dir = tempDir(t)
  await openStore(dir)
  const rec = { owner: 'x', pid: deadPid(), host: HOST_TAG, at: Date.now(), token: 'abc123' }
  fs.writeFileSync(path.join(dir, 'claims', 'gone-1.claim'), JSON.stringify(rec))
  await openStore(dir)
  t.same(fs.readdirSync(path.join(dir, 'claims')), [])
})

t.test(
  'a process killed while releasing a claim does not block the message: its marker is cleared at once',
  async (t) => {
    const { dir, store, ids, lines } = await spoolWith(t, 1)
    const id = ids[0]!
    const dead = deadPid()
    // What a SIGKILL between "create the .next marker" and "unlink the claim" leaves behind.
    const token = 'feedbeef01'
    const rec = { owner: 'killed', pid: dead, host: HOST_TAG, at: Date.now(), token }
    fs.writeFileSync(path.join(dir, 'claims', `${id}.claim`), JSON.stringify(rec))
    fs.writeFileSync(
      path.join(dir, 'claims', `${id}.${token}.next`),
      JSON.stringify({ pid: dead, host: HOST_TAG, at: Date.now() }),
    )
    fs.writeFileSync(path.join(dir, 'claims', `.tmp-${HOST_TAG}-${dead}-0123abcd`), '{}')
    t.equal(await store.claim(id, 'parent'), null, 'the first try finds the marker and clears it')
    t.ok(lines.some((l) => l.msg === 'cleared a claim marker left by a crashed process'))
    const claim = await store.claim(id, 'parent')
    t.match(claim, { id, owner: 'parent' }, 'the next try takes the dead holder’s claim, without waiting a minute')
    await store.release(claim!)
    await openStore(dir)
    t.same(fs.readdirSync(path.join(dir, 'claims')), [], 'open() clears temp files of dead writers too')
  },
)
