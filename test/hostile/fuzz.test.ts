// A bounded fuzz run against a live `mxgate start`: valid SMTP dialogues from a seeded corpus and mutations of them
// (bit flips, bare CR/LF/NUL, smuggling attempts, routing recipients, garbage commands, dropped dots, pipelining
// everything, swapped and repeated steps, abrupt closes and resets), every write cut at random byte boundaries, a few
// at a time.
//
// What must hold, whatever the input:
// - mxgate stays up: no exit, and a clean dialogue still gets 250 at the end;
// - its memory stays bounded: RSS under 300 MB, and the second half of the run grows it by less than 64 MB;
// - every reply line it writes is `DDD text` or `DDD-text` ending in CRLF;
// - every message the backend received was completed by its sender: its bytes as the backend got them (after
//   mxgate's Received field, dot-stuffing kept) appear in what one dialogue wrote, immediately followed by `.` CRLF
//   — so no message reached a backend without its sender's `<CRLF>.<CRLF>`, and none was cut, joined or smuggled;
// - no message the backend received holds a NUL, a bare CR or a bare LF (each is refused whole);
// - no DATA brought the backend more than one message: a dialogue sent it at most as many messages as it got 354
//   replies (the check above alone would pass a smuggled inner message, whose bytes the sender also wrote);
// - no recipient the backend received routes elsewhere: each is a mailbox of our domain (or bare postmaster) whose
//   dequoted local part holds no %, ! or @ (the "odd recipient" mutation builds addresses from exactly those);
// - for clean dialogues, 250 is a promise both ways: a message whose final dot drew 250 reached the backend exactly
//   once, and one that drew a 4xx/5xx did not reach it at all.
//
// Re-run a seed: FUZZ_SEED=N npx tap test/hostile/fuzz.test.ts (FUZZ_CASES=N for a longer run).
import { readFileSync } from 'node:fs'
import t from 'tap'
import { FakeBackend, type ReceivedMessage } from '../../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../../src/testing/smtp-sender'
import { startMxgate } from '../helpers/mxgate-process'
import { type DialogueRun, malformedReply, playDialogue } from './fuzz-client'
import { cleanDialogue, type Dialogue, mutatedDialogue, rng } from './fuzz-corpus'

const SEED = Number(process.env.FUZZ_SEED ?? 20261204)
const CASES = Number(process.env.FUZZ_CASES ?? 400)
const CONCURRENCY = 4
const MB = 1024 * 1024

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) * 1024 : Number.NaN
}

/** The message as its sender wrote it: the backend's wire bytes without the Received field mxgate put first. */
function senderPart(msg: ReceivedMessage): Buffer {
  const text = msg.wire.toString('latin1')
  if (!text.startsWith('Received:')) return msg.wire
  let at = text.indexOf('\r\n')
  while (at >= 0 && (text[at + 2] === ' ' || text[at + 2] === '\t')) at = text.indexOf('\r\n', at + 2)
  return at < 0 ? msg.wire : msg.wire.subarray(at + 2)
}

/** Why a recipient the backend got would route mail elsewhere (README: %, ! or @ in the dequoted local part, or a
 * domain not ours), or null. Bare postmaster is ours. */
function routesElsewhere(rcpt: string): string | null {
  const at = rcpt.lastIndexOf('@')
  if (at < 0) return rcpt.toLowerCase() === 'postmaster' ? null : 'no domain'
  const local = rcpt.slice(0, at)
  const domain = rcpt
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.$/, '')
  const dequoted = local.startsWith('"') && local.endsWith('"') ? local.slice(1, -1).replace(/\\(.)/g, '$1') : local
  if (domain !== 'example.com') return `domain ${domain}`
  return /[%!@]/.test(dequoted) ? `local part ${dequoted}` : null
}

/** Where `wire` holds a NUL, a CR not followed by LF or an LF not after a CR, or null. */
function badByte(wire: Buffer): string | null {
  for (let i = 0; i < wire.length; i++) {
    const c = wire[i]
    if (c === 0x00) return `NUL at ${i}`
    if (c === 0x0d && wire[i + 1] !== 0x0a) return `bare CR at ${i}`
    if (c === 0x0a && wire[i - 1] !== 0x0d) return `bare LF at ${i}`
  }
  return null
}

/** How many 354 replies (go ahead with DATA) a dialogue got. */
function goAheads(run: DialogueRun): number {
  return run.received
    .toString('latin1')
    .split('\r\n')
    .filter((line) => line.startsWith('354 ')).length
}

/**
 * The dialogues that could have sent `msg`: its bytes (after mxgate's Received field, dot-stuffing kept) and a
 * final dot appear in what the dialogue wrote; only the one its token names, when it carries one.
 */
function possibleSenders(msg: ReceivedMessage, runs: DialogueRun[]): DialogueRun[] {
  const sent = Buffer.concat([senderPart(msg), Buffer.from('.\r\n')])
  const token = /X-Fuzz-Token: s\d+-d(\d+)-/.exec(msg.wire.toString('latin1'))
  const own = token ? runs.filter((r) => r.dialogue.id === Number(token[1])) : runs
  return own.filter((r) => r.written.includes(sent))
}

t.test(`fuzz: ${CASES} dialogues, seed ${SEED}`, async (t) => {
  t.comment(`fuzz seed ${SEED}; re-run: FUZZ_SEED=${SEED} npx tap test/hostile/fuzz.test.ts`)
  const backend = new FakeBackend({ id: 'mx1' })
  await backend.start()
  t.teardown(() => backend.stop())
  const mx = await startMxgate({
    backends: `mx1=127.0.0.1:${backend.port}`,
    env: { MXGATE_LOG_LEVEL: 'error' },
  })
  t.teardown(async () => {
    const stopping = Date.now()
    await mx.stop()
    t.comment(`mxgate stopped in ${Date.now() - stopping} ms`)
  })
  const pid = mx.proc.pid as number

  const pick = rng(SEED)
  const dialogues: Dialogue[] = Array.from({ length: CASES }, (_, id) =>
    pick() < 0.4 ? cleanDialogue(SEED, id) : mutatedDialogue(SEED, id),
  )
  const runs: DialogueRun[] = []
  const rss: number[] = []
  const started = Date.now()
  let next = 0
  const worker = async () => {
    for (let i = next++; i < dialogues.length; i = next++) {
      const d = dialogues[i] as Dialogue
      const clean = d.mutations.length === 0
      runs.push(
        await playDialogue(d, rng(SEED ^ (i * 2_654_435_761)), { port: mx.port, stepTimeoutMs: clean ? 10_000 : 400 }),
      )
      if (i === Math.floor(CASES / 10) || i === Math.floor(CASES / 2)) rss.push(rssBytes(pid))
    }
  }
  rss.push(rssBytes(pid))
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
  // Messages accepted at the very end may still be on their way to the backend.
  const delivered = () => runs.flatMap((r) => [...r.dotReplies].filter(([, code]) => code === 250)).length
  for (let waited = 0; backend.received.length < delivered() && waited < 5000; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  rss.push(rssBytes(pid))
  // What the dialogues delivered; the clean message sent below comes after this.
  const received = [...backend.received]
  const mutated = runs.filter((r) => r.dialogue.mutations.length > 0)
  t.comment(
    `${runs.length} dialogues in ${Date.now() - started} ms (${runs.length - mutated.length} clean, ${mutated.length} mutated; ` +
      `${runs.filter((r) => r.outcome === 'stalled').length} stalled, ${runs.filter((r) => r.outcome === 'closed').length} closed by mxgate); ` +
      `backend received ${backend.received.length} messages; RSS MB ${rss.map((b) => (b / MB).toFixed(0)).join(' → ')}`,
  )

  t.test('mxgate stays up and still serves a clean dialogue', async (t) => {
    t.equal(mx.proc.exitCode, null, 'no exit code')
    t.equal(mx.proc.signalCode, null, 'no signal')
    const sent = await sendMessage({
      host: '127.0.0.1',
      port: mx.port,
      from: 'after@fuzz.test',
      to: ['user@example.com'],
      message: makeTestMessage({ subject: 'after the fuzz run' }),
    })
    t.equal(sent.code, 250, `a clean message after the run: ${sent.reply}`)
  })

  t.test('its memory stays bounded', async (t) => {
    const [, warm = Number.NaN, mid = Number.NaN, end = Number.NaN] = rss
    t.ok(end < 300 * MB, `RSS at the end ${(end / MB).toFixed(0)} MB < 300 MB`)
    t.ok(
      end - mid < 64 * MB,
      `second half grew RSS by ${((end - mid) / MB).toFixed(0)} MB (first: ${((mid - warm) / MB).toFixed(0)} MB)`,
    )
  })

  t.test('every reply line is well-formed', async (t) => {
    const bad = runs.map((r) => [r.dialogue, malformedReply(r.received)] as const).filter(([, why]) => why !== null)
    for (const [d, why] of bad.slice(0, 5)) t.fail(`dialogue ${d.id} (${d.mutations.join(', ') || 'clean'}): ${why}`)
    t.equal(bad.length, 0, 'no malformed reply in any dialogue')
  })

  t.test('every message the backend received was completed by its sender, byte for byte', async (t) => {
    const incomplete = received.filter((msg) => possibleSenders(msg, runs).length === 0)
    for (const msg of incomplete.slice(0, 5)) {
      t.fail(
        `backend received a message no sender completed: ${JSON.stringify(msg.wire.toString('latin1').slice(0, 300))}`,
      )
    }
    t.equal(incomplete.length, 0, `all ${received.length} received messages match a sender's completed DATA`)
  })

  t.test('no message the backend received holds a NUL, a bare CR or a bare LF', async (t) => {
    const bad = received.map((msg) => [msg, badByte(msg.wire)] as const).filter(([, why]) => why !== null)
    for (const [msg, why] of bad.slice(0, 5)) {
      t.fail(`backend received ${why}: ${JSON.stringify(msg.wire.toString('latin1').slice(0, 300))}`)
    }
    t.equal(bad.length, 0, `none of ${received.length} received messages holds a NUL, bare CR or bare LF`)
  })

  t.test('no dialogue brought the backend more messages than it got 354 replies', async (t) => {
    // Each message is charged to a dialogue that could have sent it and still has a 354 to spare; those with the
    // fewest possible senders first (a token names one), so a message is left over only when no matching is possible.
    const spare = new Map(runs.map((r) => [r, goAheads(r)]))
    const candidates = received
      .map((msg) => ({ msg, from: possibleSenders(msg, runs) }))
      .sort((a, b) => a.from.length - b.from.length)
    const extra: ReceivedMessage[] = []
    for (const { msg, from } of candidates) {
      const run = from.find((r) => (spare.get(r) ?? 0) > 0)
      if (run === undefined) extra.push(msg)
      else spare.set(run, (spare.get(run) ?? 0) - 1)
    }
    for (const msg of extra.slice(0, 5)) {
      const ids = possibleSenders(msg, runs).map((r) => `${r.dialogue.id} (${goAheads(r)} × 354)`)
      t.fail(
        `a message beyond its sender's 354 replies, from dialogue ${ids.join(' or ') || 'none'}: ` +
          JSON.stringify(msg.wire.toString('latin1').slice(0, 300)),
      )
    }
    const total = runs.reduce((n, r) => n + goAheads(r), 0)
    t.ok(received.length <= total, `${received.length} messages received, ${total} 354 replies sent`)
    t.equal(extra.length, 0, 'every received message is matched to a 354 of its own dialogue')
  })

  t.test('no recipient the backend received routes elsewhere', async (t) => {
    const routed = received
      .flatMap((msg) => msg.to.map((r) => [r, routesElsewhere(r)] as const))
      .filter(([, why]) => why)
    for (const [rcpt, why] of routed.slice(0, 5)) t.fail(`backend received RCPT ${JSON.stringify(rcpt)}: ${why}`)
    t.equal(routed.length, 0, `every recipient of ${received.length} messages is a mailbox of example.com`)
  })

  t.test('clean dialogues: 250 means at the backend once, a refusal means not at all', async (t) => {
    const seen = new Map<string, number>()
    for (const msg of received) {
      const m = /X-Fuzz-Token: (\S+)\r\n/.exec(msg.wire.toString('latin1'))
      if (m?.[1]) seen.set(m[1], (seen.get(m[1]) ?? 0) + 1)
    }
    const clean = runs.filter((r) => r.dialogue.mutations.length === 0)
    t.equal(clean.filter((r) => r.outcome !== 'done').length, 0, 'every clean dialogue got every reply')
    let accepted = 0
    let refused = 0
    for (const r of clean) {
      for (const [token, code] of r.dotReplies) {
        if (code === 250) {
          accepted++
          if (seen.get(token) !== 1) t.fail(`${token} drew 250 but reached the backend ${seen.get(token) ?? 0} times`)
        } else {
          refused++
          if (seen.has(token)) t.fail(`${token} drew ${code} but reached the backend`)
        }
      }
    }
    t.ok(accepted > 0, `${accepted} clean messages accepted, ${refused} refused at the dot`)
  })
})
