// A second process for the spool tests (run by test/spool-helpers.ts spawnChild). Modes:
//   claim <dir> <owner> <id...>   open the spool, print "ready", wait for "go" on stdin, claim every id, print
//                                 {"id","won"} per id, print "done"; then hold the claims until "release" (lets
//                                 them go, prints "released") or "exit" (or stdin ends)
//   write <dir> <concurrency>     write messages forever (bounded), print "wrote <id>" after each write() resolved
//   deliver <dir> <owner> <id> <rcpt>
//                                 open the spool, claim <id>, record <rcpt> as delivered (as a runner does after a
//                                 partial delivery), release the claim, print "done"; then wait for "exit"
import { createInterface } from 'node:readline'
import pino from 'pino'
import type { Claim } from '../src/spool/claims'
import { SpoolStore } from '../src/spool/store'

const [mode, dir, ...rest] = process.argv.slice(2)
if (!dir) throw new Error('usage: spool-child.ts claim|write|deliver <dir> ...')
const log = pino({ level: 'silent' })
const store = new SpoolStore({ dir, maxMessages: 1e9, maxBytes: 1e15, minFreeBytes: 0, fsync: true }, log)
const stdin = createInterface({ input: process.stdin })
const commands: string[] = []
const waiters: ((line: string) => void)[] = []
stdin.on('line', (l) => {
  const w = waiters.shift()
  if (w) w(l)
  else commands.push(l)
})
stdin.on('close', () => process.exit(0))
const next = (): Promise<string> =>
  commands.length > 0 ? Promise.resolve(commands.shift()!) : new Promise((r) => waiters.push(r))

async function claimMode(owner: string, ids: string[]): Promise<void> {
  await store.open()
  console.log('ready')
  while ((await next()) !== 'go') {}
  const held: Claim[] = []
  for (const id of ids) {
    const claim = await store.claim(id, owner)
    if (claim) held.push(claim)
    console.log(JSON.stringify({ id, won: claim !== null }))
  }
  console.log('done')
  for (let line = await next(); line !== 'exit'; line = await next()) {
    if (line !== 'release') continue
    for (const claim of held.splice(0)) await store.release(claim)
    console.log('released')
  }
  process.exit(0)
}

async function writeMode(concurrency: number): Promise<void> {
  await store.open()
  console.log('ready')
  const body = Buffer.from(`Subject: crash test\r\n\r\n${'x'.repeat(5000)}\r\n`)
  let n = 0
  const writer = async (): Promise<void> => {
    // Bounded: the parent kills us long before this, and it stops by itself if the parent does not.
    while (n < 20_000) {
      n++
      const e = await store.write({
        id: `child-${n}`,
        envelope: { from: 's@example.org', to: ['r@example.com'] },
        body,
        receivedAt: Date.now(),
      })
      // Printed only after write() resolved: the equivalent of our 250 to the sender.
      console.log(`wrote ${e.id}`)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, writer))
  process.exit(0)
}

async function deliverMode(owner: string, id: string, rcpt: string): Promise<void> {
  await store.open()
  const claim = await store.claim(id, owner)
  if (!claim) throw new Error(`could not claim ${id}`)
  const e = store.get(id)
  if (!e) throw new Error(`no message ${id}`)
  await store.update(id, { pending: e.pending.filter((r) => r !== rcpt), done: [...e.done, rcpt] })
  await store.release(claim)
  console.log('done')
  while ((await next()) !== 'exit') {}
  process.exit(0)
}

if (mode === 'claim') void claimMode(rest[0] ?? 'child', rest.slice(1))
else if (mode === 'deliver') void deliverMode(rest[0] ?? 'child', rest[1] ?? '', rest[2] ?? '')
else if (mode === 'write') void writeMode(Number(rest[0] ?? 1))
else throw new Error(`unknown mode ${mode}`)
