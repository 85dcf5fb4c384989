// Canaries end to end: real mxgate (Haraka and all), fake backends over loopback SMTP that forward canaries back to
// mxgate's return address or report them by the webhook, shortened intervals, condition waits.
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { type MxgateProcess, runMxgate, startMxgate } from './helpers/mxgate-process'
import { eventually } from './helpers/spool-e2e'

const RETURN = 'canary-return@example.com'
const CANARY_ENV = {
  MXGATE_CANARY_ADDRESS: 'canary@example.com',
  MXGATE_CANARY_RETURN: RETURN,
  MXGATE_CANARY_INTERVAL: '200ms',
  MXGATE_CANARY_TIMEOUT: '3s',
  MXGATE_ADMIN_TOKEN: 'canary-e2e-admin-token',
}

interface ApiBackend {
  id: string
  state: string
  reason: string | null
  successRatio: number | null
  messagesPerMinute: number
  detector?: { ejectedBy: string | null; evidence: { signal: string; faults: number } | null }
  canary?: { sent: number; returned: number; lost: number; lastRoundTripMs: number | null }
}

async function backends(node: MxgateProcess): Promise<ApiBackend[]> {
  const res = await fetch(`http://127.0.0.1:${node.adminPort}/api/backends`)
  return ((await res.json()) as { backends: ApiBackend[] }).backends
}

async function metric(node: MxgateProcess, name: string, backend?: string): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${node.adminPort}/metrics`)).text()
  const label = backend === undefined ? '' : `\\{backend="${backend}"\\}`
  const m = new RegExp(`^${name}${label} (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : null
}

async function fakes(t: Test, spec: { id: string; discardShare?: number; seed?: number }[]): Promise<FakeBackend[]> {
  const out: FakeBackend[] = []
  for (const s of spec) {
    const b = new FakeBackend(s)
    await b.start()
    t.teardown(() => b.stop())
    out.push(b)
  }
  return out
}

const list = (bs: FakeBackend[]) => bs.map((b) => `${b.id}=127.0.0.1:${b.port}`).join(',')

t.test('a backend that discards everything is ejected after one canary timeout; its peers stay', async (t) => {
  const bs = await fakes(t, [{ id: 'mx1' }, { id: 'mx2' }, { id: 'mx3', discardShare: 1 }])
  const node = await startMxgate({ backends: list(bs), env: CANARY_ENV })
  t.teardown(() => node.stop())
  for (const b of bs) b.forwardCanaries({ smtp: { host: '127.0.0.1', port: node.port, to: RETURN } })
  const started = Date.now()
  const ejected = await eventually(
    async () => (await backends(node)).find((b) => b.id === 'mx3')?.state === 'ejected',
    30_000,
  )
  t.ok(ejected, 'mx3 is ejected')
  const took = Date.now() - started
  t.comment(`mx3 ejected ${took} ms after mxgate started (canary timeout 3 s)`)
  const view = await backends(node)
  const mx3 = view.find((b) => b.id === 'mx3')!
  t.equal(mx3.detector?.ejectedBy, 'canary')
  t.equal(mx3.detector?.evidence?.signal, 'canary')
  t.match(mx3.reason, /^canary: lost after 250: none of its \d+ canaries since admission came back/)
  t.ok(
    node.logs.some((l) => l.backend === 'mx3' && l.to === 'ejected' && String(l.reason).startsWith('canary:')),
    'the ejection is logged with its evidence',
  )
  for (const id of ['mx1', 'mx2']) {
    const b = view.find((x) => x.id === id)!
    t.equal(b.state, 'admitted', `${id} stays admitted`)
    t.ok((b.canary?.returned ?? 0) > 0, `${id} returned canaries`)
    t.equal(b.canary?.lost, 0, `${id} lost none`)
    t.type(b.canary?.lastRoundTripMs, 'number', `${id} round trip in the API`)
  }
  t.ok(((await metric(node, 'mxgate_canary_lost_total', 'mx3')) ?? 0) >= 1, 'mxgate_canary_lost_total{backend="mx3"}')
  t.ok(((await metric(node, 'mxgate_canary_returned_total', 'mx1')) ?? 0) >= 1)

  t.test('canaries and their returns never count as user mail', async (t) => {
    const text = await (await fetch(`http://127.0.0.1:${node.adminPort}/metrics`)).text()
    t.notMatch(text, /^mxgate_messages_total\{/m, 'no message outcome counted')
    t.notMatch(text, /^mxgate_backend_attempts_total\{/m, 'no delivery attempt counted')
    for (const b of await backends(node)) {
      t.equal(b.successRatio, null, `${b.id}: no success ratio from canaries`)
      t.equal(b.messagesPerMinute, 0, `${b.id}: no messages per minute from canaries`)
    }
  })

  t.test('the return address: consumed, never relayed or spooled; refused without a token or mixed', async (t) => {
    const before = bs.map((b) => b.received.length + b.discarded.length)
    const noToken = await sendMessage({
      host: '127.0.0.1',
      port: node.port,
      from: 'a@remote.test',
      to: [RETURN],
      message: makeTestMessage(),
    })
    t.equal(noToken.code, 550)
    t.match(noToken.reply, /No canary token \(X-Mxgate-Canary: mxc- and 24 hex digits\) in the headers or body/)
    const mixed = await sendMessage({
      host: '127.0.0.1',
      port: node.port,
      from: 'a@remote.test',
      to: [RETURN, 'user@example.com'],
      message: 'Subject: mxgate canary mxc-0123456789abcdef01234567\r\n\r\nhi\r\n',
    })
    t.equal(mixed.rcptReplies[1]?.code, 452, 'the extra recipient is refused')
    t.match(mixed.rcptReplies[1]?.reply ?? '', /not in the same message as the canary return address/)
    t.equal(mixed.ok, true, 'the return itself is taken')
    t.match(mixed.reply, /not pending here/, `an unknown token is noted, not an error: ${mixed.reply}`)
    const userFirst = await sendMessage({
      host: '127.0.0.1',
      port: node.port,
      from: 'a@remote.test',
      to: ['user@example.com', RETURN],
      message: makeTestMessage(),
    })
    t.equal(userFirst.rcptReplies[1]?.code, 452, 'the return address after a user recipient is refused')
    t.match(userFirst.rcptReplies[1]?.reply ?? '', /canary return address and takes no other recipients/)
    // The user message of that transaction was relayed: the only message any backend got besides canaries.
    const extra = bs.flatMap((b, i) => [...b.received, ...b.discarded].slice(before[i]))
    t.same(
      extra.filter((m) => !/^X-Mxgate-Canary:/im.test(m.raw.toString('latin1'))).map((m) => m.to),
      [['user@example.com']],
      'only the user recipient reached a backend',
    )
    const all = bs.flatMap((b) => [...b.received, ...b.discarded])
    t.notOk(
      all.some((m) => m.to.includes(RETURN)),
      'no backend ever received mail to the return address',
    )
    const spool = await fetch(`http://127.0.0.1:${node.adminPort}/api/spool`, {
      headers: { authorization: `Bearer ${CANARY_ENV.MXGATE_ADMIN_TOKEN}` },
    })
    t.same(((await spool.json()) as { messages: unknown[] }).messages, [], 'nothing spooled')
  })

  t.test('mxgate status shows the canary round trip', async (t) => {
    const r = await runMxgate(['status', '--admin', `http://127.0.0.1:${node.adminPort}`], { NO_COLOR: '1' })
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /CANARY RTT/)
    t.match(r.stdout, /mx1 .* \d+(ms|\.\ds)/)
  })
})

t.test('a backend that discards 10% among three healthy ones is ejected; none of the healthy ones is', async (t) => {
  const bs = await fakes(t, [{ id: 'mx1' }, { id: 'mx2' }, { id: 'mx3' }, { id: 'mx4', discardShare: 0.1, seed: 7 }])
  const node = await startMxgate({ backends: list(bs), env: { ...CANARY_ENV, MXGATE_CANARY_INTERVAL: '100ms' } })
  t.teardown(() => node.stop())
  for (const b of bs) b.forwardCanaries({ smtp: { host: '127.0.0.1', port: node.port, to: RETURN } })
  const ejected = await eventually(
    async () => (await backends(node)).find((b) => b.id === 'mx4')?.state === 'ejected',
    60_000,
  )
  t.ok(ejected, 'mx4 is ejected')
  const view = await backends(node)
  const mx4 = view.find((b) => b.id === 'mx4')!
  t.equal(mx4.detector?.ejectedBy, 'canary')
  t.comment(`mx4: ${mx4.reason}; ${bs[3]!.counters.discarded} of ${bs[3]!.counters.messages} discarded`)
  for (const b of view.filter((x) => x.id !== 'mx4')) {
    t.equal(b.state, 'admitted', `${b.id} stays admitted`)
    t.equal(b.canary?.lost, 0, `${b.id} lost no canary`)
  }
  t.notOk(
    node.logs.some((l) => l.to === 'ejected' && l.backend !== 'mx4'),
    'no healthy backend was ever ejected',
  )
})

t.test('the webhook path: its own token returns canaries; a wrong token or the admin token is refused', async (t) => {
  const hook = 'canary-webhook-token-0123456789'
  const bs = await fakes(t, [{ id: 'mx1' }, { id: 'mx2' }])
  const node = await startMxgate({
    backends: list(bs),
    env: {
      MXGATE_CANARY_ADDRESS: 'canary@example.com',
      MXGATE_CANARY_INTERVAL: '200ms',
      MXGATE_CANARY_TIMEOUT: '3s',
      MXGATE_CANARY_WEBHOOK_TOKEN: hook,
      MXGATE_ADMIN_TOKEN: 'canary-e2e-admin-token',
    },
  })
  t.teardown(() => node.stop())
  const url = `http://127.0.0.1:${node.adminPort}`
  for (const b of bs) b.forwardCanaries({ webhook: { url, token: hook } })
  t.ok(
    await eventually(async () => (await backends(node)).every((b) => (b.canary?.returned ?? 0) >= 2), 20_000),
    'canaries come back by the webhook',
  )
  t.same(
    bs.flatMap((b) => b.canaries?.failures ?? []),
    [],
    'every webhook call was taken',
  )
  const post = (token: string, auth?: string) =>
    fetch(`${url}/api/canaries/${token}`, {
      method: 'POST',
      headers: auth === undefined ? {} : { authorization: `Bearer ${auth}` },
    })
  const some = 'mxc-0123456789abcdef01234567'
  const wrong = await post(some, 'not-the-canary-token-at-all')
  t.equal(wrong.status, 401)
  t.match(((await wrong.json()) as { error: string }).error, /does not match canary\.webhook_token/)
  const admin = await post(some, 'canary-e2e-admin-token')
  t.equal(admin.status, 401, 'the admin token does not work here')
  const none = await post(some)
  t.equal(none.status, 401)
  t.match(((await none.json()) as { error: string }).error, /needs the canary webhook token/)
  const bad = await post('hello', hook)
  t.equal(bad.status, 400)
  t.match(
    ((await bad.json()) as { error: string }).error,
    /is not a canary token; it looks like mxc- and 24 hex digits/,
  )
  const unknown = await post(some, hook)
  t.equal(unknown.status, 200)
  t.match(await unknown.json(), { token: some, kind: 'unknown' }, 'a token not pending here is noted')
  for (const b of await backends(node)) t.equal(b.state, 'admitted', `${b.id} admitted`)
})
