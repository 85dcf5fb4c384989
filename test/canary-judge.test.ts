// The canary judge, tokens and the return-address policy: pure logic, driven by hand.
import t from 'tap'
import { canaryBody, findToken } from '../src/canary/message'
import { newToken, PendingTokens, TOKEN_RE } from '../src/canary/tokens'
import { CANARY_JUDGE_DEFAULTS, CanaryJudge, type PeerView } from '../src/health/canary-judge'
import { canaryReturnReply, judgeCanaryRecipient } from '../src/inbound/canary-return'
import { createRng } from '../src/testing/fault-rules'

const ROUND = 10_000
const judge = () => new CanaryJudge({ ...CANARY_JUDGE_DEFAULTS, roundMs: ROUND })
const peers = (...ids: string[]): PeerView[] => ids.map((id) => ({ id, inRotation: true }))

/** One round at `at`: every backend's canary either comes back or is lost; returns the alarms of the round. */
function round(j: CanaryJudge, pool: PeerView[], at: number, lost: (id: string) => boolean): string[] {
  const alarms: string[] = []
  for (const p of pool) if (!lost(p.id)) j.returned(p.id, at, pool)
  for (const p of pool) if (lost(p.id) && j.lost(p.id, at, at + 120_000, pool) !== null) alarms.push(p.id)
  return alarms
}

t.test('a backend that never returns a canary while its peers do: an alarm at its first loss', async (t) => {
  const j = judge()
  const pool = peers('mx1', 'mx2', 'mx3')
  const alarms = round(j, pool, 1000, (id) => id === 'mx3')
  t.same(alarms, ['mx3'])
  const e = j.lost('mx3', 2000, 200_000, pool)
  t.equal(e?.rule, 'none-returned')
  t.equal(e?.signal, 'canary')
})

t.test('one loss of a backend that returned canaries before is no alarm; three close together are', async (t) => {
  const j = judge()
  const pool = peers('mx1', 'mx2', 'mx3')
  for (let i = 0; i < 20; i++) round(j, pool, i * ROUND, () => false)
  t.same(
    round(j, pool, 20 * ROUND, (id) => id === 'mx3'),
    [],
    'one loss',
  )
  t.same(
    round(j, pool, 21 * ROUND, (id) => id === 'mx3'),
    [],
    'two losses',
  )
  const third = round(j, pool, 22 * ROUND, (id) => id === 'mx3')
  t.same(third, ['mx3'], 'three in a row reach h')
})

t.test('10% loss among three healthy backends stands out; the healthy ones never do', async (t) => {
  for (const seed of [1, 2, 3, 4, 5]) {
    const j = judge()
    const rng = createRng(seed)
    const pool = peers('mx1', 'mx2', 'mx3', 'mx4')
    let alarmAt: number | null = null
    const healthyAlarms: string[] = []
    for (let i = 0; i < 2000 && alarmAt === null; i++) {
      const alarms = round(j, pool, i * ROUND, (id) => id === 'mx4' && rng() < 0.1)
      if (alarms.includes('mx4')) alarmAt = i
      healthyAlarms.push(...alarms.filter((id) => id !== 'mx4'))
    }
    t.not(alarmAt, null, `seed ${seed}: mx4 is caught (after ${alarmAt} rounds)`)
    t.same(healthyAlarms, [], `seed ${seed}: no healthy backend alarms`)
  }
})

t.test('a pool-wide loss (broken return path) singles nobody out', async (t) => {
  const j = judge()
  const pool = peers('mx1', 'mx2', 'mx3')
  for (let i = 0; i < 10; i++) round(j, pool, i * ROUND, () => false)
  const alarms: string[] = []
  for (let i = 10; i < 30; i++) alarms.push(...round(j, pool, i * ROUND, () => true))
  t.ok(j.degraded(pool), 'the pool is degraded')
  t.same([...new Set(alarms)].length < 3, true, 'not every backend is singled out')
})

t.test('without peers a loss is no alarm (it may be the return path)', async (t) => {
  const j = judge()
  const pool = peers('mx1')
  for (let i = 0; i < 10; i++) t.equal(j.lost('mx1', i * ROUND, i * ROUND + 1, pool), null)
})

t.test('reset: a re-admitted backend starts with a clean slate', async (t) => {
  const j = judge()
  const pool = peers('mx1', 'mx2')
  round(j, pool, 0, () => false)
  round(j, pool, ROUND, (id) => id === 'mx2')
  t.ok(j.statistic('mx2') > 0)
  j.reset('mx2')
  t.equal(j.statistic('mx2'), 0)
})

t.test('pending tokens: returned once, lost once, forgotten with their backend', async (t) => {
  const p = new PendingTokens(1000)
  const a = newToken()
  const b = newToken()
  const c = newToken()
  t.match(a, TOKEN_RE)
  t.not(a, b)
  p.add(a, 'mx1', 0, 100)
  p.add(b, 'mx1', 0, 100)
  p.add(c, 'mx2', 0, 100)
  t.equal(p.accepted(a, 50), true)
  t.same(p.returned(a, 80), {
    kind: 'returned',
    canary: { token: a, backendId: 'mx1', acceptedAt: 50, accepted: true, deadline: 1050 },
    roundTripMs: 30,
  })
  t.same(p.returned(a, 90), { kind: 'unknown' }, 'a second copy is not counted twice')
  p.accepted(b, 50)
  t.same(p.expire(1049), [])
  t.same(
    p.expire(1050).map((x) => x.token),
    [b],
  )
  t.equal(p.forget('mx2'), 1)
  t.equal(p.count(), 0)
})

t.test('the canary carries its token in a header and the Subject; findToken finds it in either', async (t) => {
  const token = newToken()
  const body = canaryBody({ token, backendId: 'mx1', to: 'canary@example.com', hostname: 'mx.test', now: new Date(0) })
  const text = body.toString('latin1')
  t.match(text, new RegExp(`^X-Mxgate-Canary: ${token}\r$`, 'm'))
  t.match(text, new RegExp(`^Subject: mxgate canary ${token}\r$`, 'm'))
  t.notMatch(text, /(^|\n)\./, 'no line needs dot-stuffing')
  t.equal(findToken(`Subject: Fwd: mxgate canary ${token}\r\n\r\nhi`), token)
  t.equal(findToken('Subject: hello\r\n\r\nno token here mxc-123'), null)
})

t.test('return address at RCPT: alone it is a return; mixed, the extra recipient gets 452', async (t) => {
  const ret = 'canary-return@example.com'
  t.same(judgeCanaryRecipient('Canary-Return@example.com', [], ret), { kind: 'return' })
  t.equal(judgeCanaryRecipient('user@example.com', [], ret), null)
  t.equal(judgeCanaryRecipient('user@example.com', [], null), null, 'no return address: the ordinary policy')
  const extra = judgeCanaryRecipient('user@example.com', [ret], ret)
  t.equal(extra?.kind, 'refuse')
  if (extra?.kind === 'refuse')
    t.same(extra.refusal, {
      code: 452,
      enhanced: '4.5.3',
      text: '<user@example.com>: not in the same message as the canary return address <canary-return@example.com>; send it in a separate message',
    })
  const late = judgeCanaryRecipient(ret, ['user@example.com'], ret)
  t.equal(late?.kind, 'refuse')
  if (late?.kind === 'refuse') t.equal(late.refusal.code, 452)
  t.same(canaryReturnReply(null, null, ret), {
    code: 550,
    text: '5.6.0 No canary token (X-Mxgate-Canary: mxc- and 24 hex digits) in the headers or body; <canary-return@example.com> takes only returned mxgate canaries',
  })
  t.equal(canaryReturnReply('mxc-x', { kind: 'returned', backendId: 'mx1', roundTripMs: 5 }, ret).code, 250)
  t.equal(canaryReturnReply('mxc-x', { kind: 'unknown' }, ret).code, 250)
})
