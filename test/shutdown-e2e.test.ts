// A node leaving a load balancer's rotation, under a bounded load through the real `mxgate start`: /readyz fails at
// once, the listener keeps taking connections for the grace period, then closes; a message whose DATA spans the
// close still gets its 250; no sender is cut off in DATA; every 250 is at a backend or in the spool; exit 0.
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { type MxgateProcess, startMxgate } from './helpers/mxgate-process'
import { connectionRefused, SessionClosedError, SmtpSession } from './helpers/smtp-session'
import { eventually, tempDir } from './helpers/spool-e2e'

/** Messages one looping sender sends at most (the load is bounded however the shutdown goes). */
const MAX_PER_SENDER = 300
/** The backend holds each 250 this long, so deliveries are in flight when the listener closes (load shaping). */
const BACKEND_DELAY_MS = 150

type Outcome = 'accepted' | 'refused' | 'closed-before-data' | 'cut-in-data'

interface Sent {
  id: string
  outcome: Outcome
  reply: string
}

function message(id: string, bodyLines = 3): string {
  const body = Array.from({ length: bodyLines }, (_, i) => `line ${i} of ${id}`).join('\r\n')
  return `Message-ID: <${id}>\r\nFrom: a@remote.test\r\nTo: u@example.com\r\nSubject: ${id}\r\n\r\n${body}\r\n`
}

/** Sends up to `max` messages over one connection after another until the node stops taking them. */
async function loopingSender(port: number, tag: string, max: number, log: Sent[], stop: () => boolean) {
  let n = 0
  while (n < max && !stop()) {
    let s: SmtpSession
    try {
      const opened = await SmtpSession.open(port)
      s = opened.session
      if (!opened.banner.startsWith('220')) return
    } catch {
      return // refused: the listener is closed
    }
    let id = ''
    let inData = false
    try {
      await s.command('EHLO sender.shutdown.test')
      while (n < max && !stop()) {
        id = `${tag}-${n++}@shutdown.test`
        const mail = await s.command('MAIL FROM:<a@remote.test>')
        if (!mail.startsWith('250')) {
          log.push({ id, outcome: 'refused', reply: mail })
          break
        }
        const rcpt = await s.command('RCPT TO:<u@example.com>')
        const data = rcpt.startsWith('250') ? await s.command('DATA') : rcpt
        if (!data.startsWith('354')) {
          log.push({ id, outcome: 'refused', reply: data })
          break
        }
        inData = true
        s.write(`${message(id)}.\r\n`)
        const reply = await s.next()
        inData = false
        log.push({ id, outcome: reply.startsWith('250') ? 'accepted' : 'refused', reply })
      }
    } catch (err) {
      if (!(err instanceof SessionClosedError)) throw err
      log.push({ id, outcome: inData ? 'cut-in-data' : 'closed-before-data', reply: err.message })
    } finally {
      s.end()
    }
  }
}

async function readyz(node: MxgateProcess): Promise<{ status: number; reasons: string[] }> {
  const res = await fetch(`http://127.0.0.1:${node.adminPort}/readyz`, { signal: AbortSignal.timeout(5_000) })
  const body = (await res.json()) as { reasons: string[] }
  return { status: res.status, reasons: body.reasons }
}

/** Message-IDs of every message left in the spool directory. */
function spooledIds(dir: string): Set<string> {
  const ids = new Set<string>()
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.msg'))) {
    const m = /Message-ID: <([^>]+)>/.exec(readFileSync(path.join(dir, name), 'latin1'))
    if (m) ids.add(m[1]!)
  }
  return ids
}

async function scenario(t: Test, workers: number, senders: number): Promise<void> {
  const backends = [
    new FakeBackend({ id: 'mx1', acceptDelayMs: BACKEND_DELAY_MS }),
    new FakeBackend({ id: 'mx2', acceptDelayMs: BACKEND_DELAY_MS }),
  ]
  for (const b of backends) await b.start()
  t.teardown(() => Promise.all(backends.map((b) => b.stop())))
  const spoolDir = tempDir(t, 'mxgate-shutdown-spool-')
  const node = await startMxgate({
    backends: backends.map((b) => `${b.id}=127.0.0.1:${b.port}`).join(','),
    env: {
      MXGATE_SPOOL_DIR: spoolDir,
      MXGATE_SHUTDOWN_GRACE: '2s',
      MXGATE_SHUTDOWN_TIMEOUT: '30s',
      MXGATE_WORKERS: String(workers),
    },
  })
  t.teardown(() => node.stop())
  t.ok(await eventually(async () => (await readyz(node)).status === 200, 20_000), 'ready once listening')

  const log: Sent[] = []
  let signalled = false
  const load = Array.from({ length: senders }, (_, i) =>
    loopingSender(node.port, `w${workers}s${i}`, MAX_PER_SENDER, log, () => false),
  )
  const received = () => backends.reduce((n, b) => n + b.received.length, 0)
  t.ok(await eventually(() => received() >= 10, 20_000), 'messages flow before the signal')

  // A sender that is in DATA when the listener closes: it starts inside the grace period and sends its dot only
  // after new connections are refused.
  const slow = (await SmtpSession.open(node.port)).session
  await slow.command('EHLO slow.shutdown.test')

  const exited = new Promise<number | null>((resolve) => node.proc.once('exit', (code) => resolve(code)))
  node.proc.kill('SIGTERM')
  signalled = true
  t.ok(
    await eventually(async () => (await readyz(node)).reasons.includes('shutting down'), 2_000),
    '/readyz fails at once',
  )
  t.equal((await readyz(node)).status, 503)

  // Inside the grace period a new connection is still served in full.
  const fresh = (await SmtpSession.open(node.port)).session
  t.match(fresh.seen[0] ?? '', /^220 /, 'a new connection during the grace period gets the banner')
  await fresh.command('EHLO late.shutdown.test')
  t.match(await fresh.command('MAIL FROM:<a@remote.test>'), /^250/)
  t.match(await fresh.command('RCPT TO:<u@example.com>'), /^250/)
  t.match(await fresh.command('DATA'), /^354/)
  fresh.write(`${message(`w${workers}-fresh@shutdown.test`)}.\r\n`)
  t.match(await fresh.next(), /^250/, 'and its message is taken')
  fresh.end()

  t.match(await slow.command('MAIL FROM:<a@remote.test>'), /^250/)
  t.match(await slow.command('RCPT TO:<u@example.com>'), /^250/)
  t.match(await slow.command('DATA'), /^354/)
  const slowId = `w${workers}-slow@shutdown.test`
  const [head, ...rest] = message(slowId, 50).split('\r\n\r\n')
  slow.write(`${head}\r\n\r\n`)
  t.ok(await eventually(() => connectionRefused(node.port), 20_000), 'the listener closes after the grace period')
  slow.write(`${rest.join('\r\n\r\n')}.\r\n`)
  t.match(await slow.next(), /^250/, 'a message in DATA when the listener closed still gets its 250')
  // Then the node sends the idle connection away.
  t.match(await slow.next(), /^421 4\.3\.2/, 'an idle connection hears 421 4.3.2')
  slow.end()

  await Promise.all(load)
  t.equal(await exited, 0, 'the node exits 0')
  t.ok(signalled)

  const accepted = log.filter((s) => s.outcome === 'accepted').map((s) => s.id)
  accepted.push(`w${workers}-fresh@shutdown.test`, slowId)
  t.same(
    log.filter((s) => s.outcome === 'cut-in-data'),
    [],
    'no sender was cut off in DATA',
  )
  const delivered = new Set(backends.flatMap((b) => b.received.map((m) => m.messageId)))
  const spooled = spooledIds(spoolDir)
  const lost = accepted.filter((id) => !delivered.has(id) && !spooled.has(id))
  t.same(lost, [], `every 250 is at a backend or in the spool (${accepted.length} accepted)`)
  for (const s of log.filter((x) => x.outcome === 'refused')) t.match(s.reply, /^4/, `${s.id}: only 4xx refusals`)
}

t.test('one process: drains behind the load balancer', (t) => scenario(t, 0, 4))

t.test('with workers: each worker drains the same way', (t) => scenario(t, 2, 3))
