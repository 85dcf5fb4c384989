import t from 'tap'
import { openStore, spawnChild, tempDir } from './spool-helpers'

// A writer killed with SIGKILL at a random moment: every id it reported (our stand-in for the 250 the sender got)
// must be in the spool when it is opened again, with an intact body. SIGKILL keeps the page cache, so this proves
// the protocol's order (no acknowledgement before the rename), not the fsyncs; those guard against power loss.
t.test('every message acknowledged before a SIGKILL is found by the next open()', async (t) => {
  const dir = tempDir(t)
  const acknowledged = new Set<string>()
  let discarded = 0
  for (let round = 0; round < 5; round++) {
    const child = spawnChild(t, ['write', dir, '8'])
    await child.waitFor((l) => l.startsWith('wrote '))
    await new Promise((r) => setTimeout(r, 50 + Math.floor(Math.random() * 400)))
    child.proc.kill('SIGKILL')
    await child.exited
    for (const l of child.lines) if (l.startsWith('wrote ')) acknowledged.add(l.slice('wrote '.length))

    const { store, opened } = await openStore(dir)
    discarded += opened.discardedTemp
    const found = new Set(store.list().map((e) => e.id))
    const missing = [...acknowledged].filter((id) => !found.has(id))
    t.same(missing, [], `round ${round}: all ${acknowledged.size} acknowledged messages are in the spool`)
    t.equal(opened.quarantined, 0, `round ${round}: no corrupt file`)
    const sample = [...acknowledged].slice(-5)
    for (const id of sample) t.equal((await store.readBody(id)).length, store.get(id)?.size, `body of ${id} intact`)
  }
  t.ok(
    acknowledged.size > 0,
    `${acknowledged.size} messages acknowledged, ${discarded} interrupted temp files discarded`,
  )
})
