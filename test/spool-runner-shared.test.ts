// The spool runner beside another process on the same spool directory (a child that holds or changes claims):
// no futile re-claiming of a message someone else delivers, `spool flush` writes nothing under another's claim,
// and an operator's `spool bounce` reports only what is still pending after the other process's progress, and is
// refused as busy (409) while the other process holds the message.
import pino from 'pino'
import t, { type Test } from 'tap'
import { parseTokens } from '../src/admin/auth'
import { startAdminServer } from '../src/admin/server'
import { MessageBusyError } from '../src/admin/types'
import type { MxgateConfig } from '../src/config/schema'
import type { InboundMessage } from '../src/message'
import { NodeAdmin } from '../src/node-admin'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { startRig } from './helpers/engine'
import { backend, eventually, parseDsn, spoolFiles } from './helpers/spool-e2e'
import { spawnChild } from './spool-helpers'

let n = 0
function inbound(to: string[]): InboundMessage {
  const messageId = `shared-runner-${++n}@test`
  return {
    id: messageId,
    envelope: { from: 'sender@remote.test', to },
    body: makeTestMessage({ messageId }),
    receivedAt: Date.now(),
  }
}

const REFUSE = [{ stage: 'connect' as const, action: 'refuse' as const }]
const actor = { by: 'test', from: '127.0.0.1' }
const TOKEN = 'spool-runner-shared-token'

function quick(c: MxgateConfig): void {
  c.spool.retryFirstMs = 200
  c.spool.retryMaxMs = 400
  c.spool.minFreeBytes = 0
  c.breaker.minVolume = 100_000
}

t.test(
  'a message another process is delivering is left alone: no futile claims, and flush writes nothing',
  async (t) => {
    const rig = await startRig([{ faults: REFUSE }], { tweak: quick })
    t.teardown(() => rig.close())
    const { engine } = rig
    const mx = rig.backends[0]!
    const first = await engine.accept(inbound(['x@example.com']))
    if (first.outcome !== 'spooled') throw new Error(`expected spooled, got ${first.outcome}`)
    const x = first.spoolId
    const others = [1, 2, 3, 4, 5].map(() => inbound(['y@example.com']))
    for (const m of others) t.equal((await engine.accept(m)).outcome, 'spooled')

    // Another process on the same directory takes x's claim and keeps it.
    const child = spawnChild(t, ['claim', engine.config.spool.dir, 'other-node', x])
    await child.waitFor((l) => l === 'ready')
    child.send('go')
    t.match(JSON.parse(await child.waitFor((l) => l.startsWith('{'))), { id: x, won: true })

    const claimsOfX: number[] = []
    const claim = engine.spool.claim.bind(engine.spool)
    // A claim counts once it has been answered: the runner counts the lost claim right after, and the checks below
    // read both.
    engine.spool.claim = async (id, owner) => {
      const at = Date.now()
      const won = await claim(id, owner)
      if (id === x) claimsOfX.push(at)
      return won
    }
    await mx.setFaults([])
    t.ok(await eventually(() => mx.received.length === others.length, 15_000), 'the other messages are delivered')
    t.ok(await eventually(() => claimsOfX.length >= 3, 15_000), 'x is tried again now and then')
    const gaps = claimsOfX.slice(1).map((at, i) => at - claimsOfX[i]!)
    t.ok(
      gaps.every((g) => g >= 900),
      `after losing x's claim the runner leaves it alone for a second (gaps ${gaps.join(', ')} ms)`,
    )
    t.ok(engine.runner.counters.claimsLost >= 3, 'each lost claim is counted (its drain token is given back)')

    const admin = new NodeAdmin(engine)
    const envBefore = spoolFiles(engine.config.spool.dir).env
    t.equal(await admin.spool.flush(x, actor), 1, 'flush accepts x')
    t.same(spoolFiles(engine.config.spool.dir).env, envBefore, 'flush wrote no envelope under the other’s claim')
    t.equal(mx.received.length, others.length, 'and x is not delivered while the other process holds it')

    // The other process goes away (its claim dies with it): x is delivered, once.
    child.send('exit')
    await child.exited
    t.ok(await eventually(() => mx.received.length === others.length + 1, 15_000), 'x is delivered once it is free')
    t.equal(mx.received.filter((m) => m.to.includes('x@example.com')).length, 1)
  },
)

/**
 * A node whose only backend refuses, with a smarthost for DSNs and retries an hour apart, holding one spooled message
 * for a@ and b@; its runner is stopped so nothing refreshes its index behind the test's back.
 */
async function bounceRig(t: Test) {
  const smarthost = await backend(t, { id: 'smarthost' })
  const rig = await startRig([{ faults: REFUSE }], {
    tweak: (c) => {
      quick(c)
      c.spool.retryFirstMs = 3_600_000
      c.spool.retryMaxMs = 7_200_000
      c.spool.bounceRelay = { host: '127.0.0.1', port: smarthost.port }
    },
  })
  t.teardown(() => rig.close())
  const { engine } = rig
  const r = await engine.accept(inbound(['a@example.com', 'b@example.com']))
  if (r.outcome !== 'spooled') throw new Error(`expected spooled, got ${r.outcome}`)
  await engine.runner.stop()
  return { smarthost, engine, spoolId: r.spoolId }
}

t.test('spool bounce claims the message, then reads the envelope another process just advanced', async (t) => {
  const { smarthost, engine, spoolId } = await bounceRig(t)
  t.same(engine.spool.get(spoolId)?.pending, ['a@example.com', 'b@example.com'])

  // Another process on the directory delivers a@ and records it.
  const child = spawnChild(t, ['deliver', engine.config.spool.dir, 'other-node', spoolId, 'a@example.com'])
  await child.waitFor((l) => l === 'done')
  t.same(engine.spool.get(spoolId)?.pending, ['a@example.com', 'b@example.com'], 'this node has not noticed')

  await new NodeAdmin(engine).spool.bounce(spoolId, actor)
  t.ok(await eventually(() => smarthost.received.length === 1, 10_000), 'a DSN went out')
  t.same(
    parseDsn(smarthost.received[0]!).recipients.map((f) => f['final-recipient']),
    ['rfc822; b@example.com'],
    'it names only b@: a@ was delivered by the other process',
  )
  t.same(spoolFiles(engine.config.spool.dir).msg, [], 'the message is gone')
  child.send('exit')
})

t.test('spool bounce of a message another process holds is refused as busy; once it lets go, one DSN', async (t) => {
  const { smarthost, engine, spoolId: x } = await bounceRig(t)
  const admin = new NodeAdmin(engine)
  const server = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    tokens: parseTokens(TOKEN),
    port: admin,
    log: pino({ level: 'silent' }),
  })
  t.teardown(() => server.close())
  const post = async (change: 'bounce' | 'hold') => {
    const res = await fetch(`http://127.0.0.1:${server.address.port}/api/spool/${encodeURIComponent(x)}/${change}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: '{}',
    })
    return { status: res.status, body: (await res.json()) as { error?: string; bounced?: boolean } }
  }

  // Another process on the directory holds x's claim (it is delivering x).
  const child = spawnChild(t, ['claim', engine.config.spool.dir, 'other-node', x])
  await child.waitFor((l) => l === 'ready')
  child.send('go')
  t.match(JSON.parse(await child.waitFor((l) => l.startsWith('{'))), { id: x, won: true })

  const refused = await admin.spool.bounce(x, actor).then(
    () => null,
    (err: unknown) => err,
  )
  t.ok(refused instanceof MessageBusyError, `the bounce is refused as busy (${String(refused)})`)
  t.same(
    await post('bounce'),
    { status: 409, body: { error: `message ${x} is being delivered right now; try again in a moment` } },
    'the admin API answers 409, not 500',
  )
  t.equal((await post('hold')).status, 409, 'a hold is refused as busy too')
  t.equal(engine.spool.get(x)?.held, false, 'and changes nothing')
  t.same(smarthost.received, [], 'no DSN went out')
  t.same(engine.spool.get(x)?.pending, ['a@example.com', 'b@example.com'], 'x keeps its recipients')
  t.same(spoolFiles(engine.config.spool.dir).msg.length, 1, 'x is still in the spool')

  child.send('release')
  await child.waitFor((l) => l === 'released')
  t.same(await post('bounce'), { status: 200, body: { id: x, bounced: true } }, 'once it lets go, the bounce runs')
  t.equal(smarthost.received.length, 1, 'one DSN')
  t.same(
    parseDsn(smarthost.received[0]!).recipients.map((f) => f['final-recipient']),
    ['rfc822; a@example.com', 'rfc822; b@example.com'],
    'naming both recipients',
  )
  t.same(spoolFiles(engine.config.spool.dir).msg, [], 'the message is gone')
  t.equal((await post('bounce')).status, 404, 'a second bounce finds nothing to bounce')
  t.equal(smarthost.received.length, 1, 'and sends nothing')
  child.send('exit')
})
