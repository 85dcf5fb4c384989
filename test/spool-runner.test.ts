// The spool runner in one process (the engine, no Haraka) over real fake backends and real spool files: progress
// the disk refuses to record, DSNs that cannot be made durable, bounces nobody can send, and draining at start.
import { mkdirSync, readdirSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import type { MxgateConfig } from '../src/config/schema'
import { Engine } from '../src/engine'
import { acceptReply } from '../src/haraka/replies'
import { setRootLogger } from '../src/log'
import type { InboundMessage } from '../src/message'
import { readEnvelope } from '../src/spool/files'
import type { FaultRule } from '../src/testing/fake-backend'
import { makeTestMessage } from '../src/testing/smtp-sender'
import { startRig } from './helpers/engine'
import { deliveriesPerRecipient, eventually, spoolFiles } from './helpers/spool-e2e'
import { fillDisk, tinyDisk } from './helpers/tiny-disk'
import { type LogLine, sinkLogger } from './spool-helpers'

// Every engine part logs through the root logger: collect its lines so tests can assert on them.
const sink = sinkLogger()
setRootLogger(sink.log)
const logged = (msg: string | RegExp): LogLine[] =>
  sink.lines.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg)))

let n = 0
function inbound(to: string[], from = 'sender@remote.test'): InboundMessage {
  const messageId = `runner-${++n}@test`
  return {
    id: messageId,
    envelope: { from, to },
    body: makeTestMessage({ messageId }),
    receivedAt: Date.now(),
  }
}

const LATER: FaultRule = { stage: 'rcpt', action: 'reply', reply: '451 4.3.0 try again later' }
const NO_SUCH_USER: FaultRule = { stage: 'rcpt', action: 'reply', rcpt: 'nobody@', reply: '550 5.1.1 no such user' }

/** A spool dir on a real 256 KiB tmpfs, or null (the test then plans nothing and says why: see tiny-disk.ts). */
async function spoolOnTinyDisk(t: Test): Promise<string | null> {
  const disk = await tinyDisk(t, '256k')
  if (disk.path === null) {
    t.plan(0, disk.why)
    return null
  }
  const dir = path.join(disk.path, 'spool')
  mkdirSync(dir)
  return dir
}

/** Short retries and a breaker that never ejects: the tests drive the backend's answers themselves. */
function quick(c: MxgateConfig): void {
  c.spool.retryFirstMs = 200
  c.spool.retryMaxMs = 400
  c.spool.minFreeBytes = 0
  c.breaker.minVolume = 100_000
}

t.test('a failed envelope write after a partial delivery never re-sends to the delivered recipients', async (t) => {
  const spoolDir = await spoolOnTinyDisk(t)
  if (spoolDir === null) return
  const rig = await startRig([{ faults: [LATER] }], {
    tweak: (c) => {
      quick(c)
      c.spool.dir = spoolDir
    },
  })
  t.teardown(() => rig.close())
  const mx = rig.backends[0]!
  const msg = inbound(['a@example.com', 'b@example.com'])
  const r = await rig.engine.accept(msg)
  t.equal(r.outcome, 'spooled', 'no recipient taken inline: spooled')
  const id = r.outcome === 'spooled' ? r.spoolId : ''

  const freeDisk = fillDisk(spoolDir)
  t.teardown(freeDisk)
  let refusedB = 0
  mx.on('fault', (f: { rcpt?: string }) => {
    if (f.rcpt === 'b@example.com') refusedB++
  })
  // Now the backend takes a@ and keeps refusing b@ for now: every retry must record that a@ is done.
  await mx.setFaults([{ ...LATER, rcpt: 'b@' }])
  t.ok(await eventually(() => refusedB >= 4, 20_000), `b@ is retried several times (${refusedB})`)
  t.same(deliveriesPerRecipient([mx], msg.id), { 'a@example.com': 1 }, 'a@ got the message exactly once')
  t.same(rig.engine.spool.get(id)?.pending, ['b@example.com'], 'the progress is kept in memory')
  t.same(spoolFiles(spoolDir).env, [], 'the full disk took no envelope')
  t.ok(logged('could not record delivery progress on disk; kept in memory and retried').length > 0)

  freeDisk()
  t.ok(await eventually(() => spoolFiles(spoolDir).env.length === 1, 20_000), 'the progress reaches the disk')
  const [env] = spoolFiles(spoolDir).env
  t.same(readEnvelope(spoolDir, env!).pending, ['b@example.com'], 'the envelope on disk says only b@ is pending')

  await mx.setFaults([])
  t.ok(await eventually(() => spoolFiles(spoolDir).msg.length === 0, 20_000), 'b@ is delivered and the spool empty')
  t.same(deliveriesPerRecipient([mx], msg.id), { 'a@example.com': 1, 'b@example.com': 1 }, 'each recipient once')
})

t.test('a DSN that cannot be made durable turns the 250 into a 4xx', async (t) => {
  t.test('spool over its limit: 451 4.3.4', async (t) => {
    const rig = await startRig([{ faults: [NO_SUCH_USER] }], {
      tweak: (c) => {
        quick(c)
        c.spool.maxMessages = 1
      },
    })
    t.teardown(() => rig.close())
    await rig.engine.spool.write(inbound(['queued@example.com']), { nextAttemptAt: Date.now() + 3_600_000 })
    const r = await rig.engine.accept(inbound(['a@example.com', 'nobody@example.com']))
    t.equal(r.relay.outcome, 'delivered', 'a backend took a@ and refused nobody@ for good')
    t.equal(r.outcome, 'spool-failed', 'the DSN for nobody@ could not be spooled')
    t.match(acceptReply(r), { code: 451, text: /^4\.3\.4 / }, 'so the sender hears 451 and keeps the message')
    t.same(
      rig.backends[0]!.received.map((m) => m.to),
      [['a@example.com']],
      'a@ got it (and will get it again)',
    )

    const nul = await rig.engine.accept(inbound(['a@example.com', 'nobody@example.com'], ''))
    t.equal(nul.outcome, 'relayed', 'a message from <> owes no DSN: 250 without spooling anything')
  })

  t.test('spool disk full: 451 4.3.0', async (t) => {
    const spoolDir = await spoolOnTinyDisk(t)
    if (spoolDir === null) return
    const rig = await startRig([{ faults: [NO_SUCH_USER] }], {
      tweak: (c) => {
        quick(c)
        c.spool.dir = spoolDir
      },
    })
    t.teardown(() => rig.close())
    t.teardown(fillDisk(spoolDir))
    const r = await rig.engine.accept(inbound(['a@example.com', 'nobody@example.com']))
    t.equal(r.outcome, 'spool-failed')
    t.match(acceptReply(r), { code: 451, text: /^4\.3\.0 / })
    t.same(spoolFiles(spoolDir), { msg: [], env: [], tmp: [] }, 'nothing half-written left behind')
  })
})

t.test('bounces nobody can send: held DSN-only messages have their own bound, outside the limits', async (t) => {
  const warnedBefore = logged(/^spool\.bounce_relay is not set/).length
  const rig = await startRig([{ faults: [NO_SUCH_USER] }], {
    tweak: (c) => {
      quick(c)
      c.spool.maxMessages = 2
      c.spool.heldDsnMax = 2
    },
  })
  t.teardown(() => rig.close())
  const { engine } = rig
  t.equal(logged(/^spool\.bounce_relay is not set/).length, warnedBefore + 1, 'no bounce relay: a warning at start')
  const scrape = async (name: string): Promise<number> => {
    const text = await engine.metrics.registry.metrics()
    return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1])
  }
  for (let i = 1; i <= 3; i++) {
    const r = await engine.accept(inbound(['a@example.com', 'nobody@example.com']))
    t.equal(r.outcome, 'relayed', `message ${i}: 250 (a@ delivered, the DSN for nobody@ spooled)`)
    const held = await eventually(() => engine.spool.stats().heldDsn + engine.runner.counters.dsnDropped === i, 15_000)
    t.ok(held, `message ${i} is held for its DSN (no bounce_relay)`)
  }
  t.equal(engine.spool.stats().full, false, 'held DSNs do not count toward max_messages = 2')
  t.ok(await eventually(() => engine.spool.stats().heldDsn === 2, 15_000), 'at most held_dsn_max = 2 are held')
  t.equal(engine.runner.counters.dsnDropped, 1, 'the oldest was dropped')
  t.equal(await scrape('mxgate_spool_held_dsn'), 2, 'exported as a gauge')
  t.equal(await scrape('mxgate_spool_settled_total\\{how="dsn_dropped"\\}'), 1)
  const [drop] = logged(/^dropped a message held for its DSN: more than spool\.held_dsn_max/)
  t.match(drop, { from: 'sender@remote.test', refused: ['nobody@example.com'], why: 'max' }, 'the log says who')

  // A message the backend defers is still spooled: the held DSNs take no room from real mail.
  await rig.backends[0]!.setFaults([{ ...LATER, rcpt: 'c@' }])
  const live = await engine.accept(inbound(['c@example.com']))
  t.equal(live.outcome, 'spooled', live.outcome === 'spool-failed' ? live.error.message : live.outcome)
})

t.test('a message held for its DSN is dropped after held_dsn_lifetime', async (t) => {
  const rig = await startRig([{ faults: [NO_SUCH_USER] }], {
    tweak: (c) => {
      quick(c)
      c.spool.heldDsnLifetimeMs = 1000
    },
  })
  t.teardown(() => rig.close())
  const { engine } = rig
  const r = await engine.accept(inbound(['a@example.com', 'nobody@example.com']))
  t.equal(r.outcome, 'relayed')
  t.ok(await eventually(() => engine.runner.counters.dsnDropped === 1, 20_000), 'dropped once its time is up')
  t.equal(engine.spool.list().length, 0, 'and gone from the spool')
  t.match(logged(/^dropped a message held for its DSN: held longer than spool\.held_dsn_lifetime/)[0], {
    why: 'lifetime',
  })
})

t.test(
  'with on_expiry = bounce and no bounce relay, an expired message becomes a held DSN, not held mail',
  async (t) => {
    const rig = await startRig([{ faults: [{ stage: 'connect', action: 'refuse' }] }], {
      tweak: (c) => {
        quick(c)
        c.spool.lifetimeMs = 1000
        c.spool.onExpiry = 'bounce'
      },
    })
    t.teardown(() => rig.close())
    const { engine } = rig
    const r = await engine.accept(inbound(['a@example.com']))
    t.equal(r.outcome, 'spooled')
    t.ok(await eventually(() => engine.spool.stats().heldDsn === 1, 15_000), 'held for its DSN')
    t.match(engine.spool.list()[0], {
      held: true,
      pending: [],
      bounced: [{ rcpt: 'a@example.com', reply: '4.4.7 delivery time expired' }],
    })
    t.equal(engine.spool.stats().full, false)
  },
)

t.test('mail spooled before a restart is drained at start, not after its retry interval', async (t) => {
  // Retries an hour apart: only a drain can deliver within this test.
  const rig = await startRig([{ faults: [{ stage: 'connect', action: 'refuse' }] }], {
    tweak: (c) => {
      quick(c)
      c.spool.retryFirstMs = 3_600_000
      c.spool.retryMaxMs = 7_200_000
      c.spool.drainRate = 5
    },
  })
  t.teardown(() => rig.close())
  const msgs = Array.from({ length: 12 }, () => inbound(['a@example.com']))
  for (const m of msgs) t.equal((await rig.engine.accept(m)).outcome, 'spooled')
  await rig.engine.close()

  const mx = rig.backends[0]!
  await mx.setFaults([])
  const again = new Engine(rig.config, { random: () => 0 })
  t.teardown(() => again.close())
  await again.start()
  t.ok(await eventually(() => mx.received.length === msgs.length, 15_000), 'every spooled message is delivered')
  t.same(mx.received.map((m) => m.messageId).sort(), msgs.map((m) => m.id).sort(), 'each once')
  t.ok(await eventually(() => readdirSync(rig.config.spool.dir).every((f) => !f.endsWith('.msg')), 5000))
})

t.test('a backend admitted again drains messages that are not due yet', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'connect', action: 'refuse' }] }], {
    tweak: (c) => {
      quick(c)
      c.spool.retryFirstMs = 3_600_000
      c.spool.retryMaxMs = 7_200_000
    },
  })
  t.teardown(() => rig.close())
  const { engine } = rig
  const mx = rig.backends[0]!
  await engine.health.eject('b1', 'test: down', null, 'test')
  const msgs = Array.from({ length: 3 }, () => inbound(['a@example.com']))
  for (const m of msgs) t.equal((await engine.accept(m)).outcome, 'spooled')
  await mx.setFaults([])
  await engine.health.restore('b1', 'test')
  t.ok(await eventually(() => mx.received.length === msgs.length, 15_000), 'delivered on re-admission')
})

t.test('the runner never claims a message it is already delivering', async (t) => {
  const rig = await startRig([{ faults: [{ stage: 'connect', action: 'refuse' }] }], {
    tweak: (c) => {
      quick(c)
      c.client.timeouts.dot = 1500
    },
  })
  t.teardown(() => rig.close())
  const { engine } = rig
  const mx = rig.backends[0]!
  const r = await engine.accept(inbound(['a@example.com']))
  t.equal(r.outcome, 'spooled')
  const id = r.outcome === 'spooled' ? r.spoolId : ''
  const claims: string[] = []
  const claim = engine.spool.claim.bind(engine.spool)
  engine.spool.claim = (cid, owner) => {
    claims.push(cid)
    return claim(cid, owner)
  }
  // Each delivery now stalls after the dot until the client gives up: rounds run meanwhile.
  await mx.setFaults([{ stage: 'dot', action: 'stall' }])
  t.ok(await eventually(() => mx.stalledAfterDot.length >= 2, 20_000), 'two attempts stalled')
  const attempts = engine.spool.get(id)?.attempts ?? 0
  t.ok(
    claims.length <= attempts + 1,
    `one claim per attempt (${claims.length} claims, ${attempts} attempts): none while it was in flight`,
  )
  t.equal(engine.runner.counters.claimsLost, 0, 'no claim lost (burning a drain token)')
})

t.test('a spooled message whose every recipient is refused for good owes each its own reply', async (t) => {
  const rig = await startRig([{ faults: [LATER] }], { tweak: quick })
  t.teardown(() => rig.close())
  const { engine } = rig
  const accepted = await engine.accept(inbound(['nobody@example.com', 'full@example.com']))
  if (accepted.outcome !== 'spooled') throw new Error(`not spooled: ${accepted.outcome}`)
  const id = accepted.spoolId
  await rig.backends[0]!.setFaults([
    NO_SUCH_USER,
    { stage: 'rcpt', action: 'reply', rcpt: 'full@', reply: '552 5.2.2 mailbox full' },
  ])
  t.ok(await eventually(() => engine.spool.get(id)?.pending.length === 0, 15_000), 'settled by a retry')
  const bounced = engine.spool.get(id)?.bounced ?? []
  t.same(
    bounced.map((b) => [b.rcpt, b.reply]),
    [
      ['nobody@example.com', '550 5.1.1 no such user'],
      ['full@example.com', '552 5.2.2 mailbox full'],
    ],
    'the DSN names each recipient with the reply it got',
  )
})
