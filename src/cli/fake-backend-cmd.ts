// `mxgate fake-backend`: run a fake backend SMTP server with fault modes until SIGINT/SIGTERM, printing one JSON
// line per accepted message.
import { FakeBackend, type FakeBackendOptions } from '../testing/fake-backend'
import {
  FAULT_STAGES,
  type FaultRule,
  FaultRuleError,
  type FaultStage,
  validateFaultRules,
} from '../testing/fault-rules'

export const FAKE_BACKEND_USAGE = `usage: mxgate fake-backend [options]

  --port N              port to listen on (default 0: any free port, printed on the startup line)
  --host H              address to listen on (default 127.0.0.1)
  --id ID               name in logs and queue ids (default fake-backend)
  --hostname NAME       name in the banner and EHLO reply
  --fail-rate P         reply with --reply at --stage for this share of attempts, 0..1 (default 1 when --reply or
                        --stage is given)
  --reply "CODE TEXT"   the failure reply (default "451 4.3.0 Temporary failure")
  --stage S             where the failure reply is given: ${FAULT_STAGES.join(', ')} (default dot)
  --stall-stage S       never answer at stage S
  --drop-stage S        close the connection without a reply at stage S (dot: after the whole message arrived)
  --refuse              refuse connections (ECONNREFUSED)
  --accept-delay MS     wait MS milliseconds before accepting each message
  --seed N              seed for --fail-rate, so runs repeat
  --fault JSON          a full fault rule, repeatable, e.g. '{"stage":"rcpt","action":"reply","reply":"550 5.1.1 No",
                        "rcpt":"bob"}'
  --no-pipelining       do not advertise PIPELINING
  --discard P           answer 250 and then silently throw away this share of messages, 0..1 ("accepts and loses")
  --canary-smtp H:P     forward every kept canary (X-Mxgate-Canary) by SMTP to mxgate's listener at H:P ...
  --canary-to ADDR      ... addressed to mxgate's canary.return_address
  --canary-webhook URL  or report every kept canary to mxgate's admin API at URL (POST /api/canaries/TOKEN) ...
  --canary-token T      ... with canary.webhook_token
`

export class UsageError extends Error {
  readonly code = 'EUSAGE'
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export interface CommandIo {
  stdout: { write(s: string): unknown }
  stderr: { write(s: string): unknown }
  /** Stops the server like SIGINT does (tests run the command in-process). */
  signal?: AbortSignal
}

const VALUE_OPTIONS = [
  '--port',
  '--host',
  '--id',
  '--hostname',
  '--fail-rate',
  '--reply',
  '--stage',
  '--stall-stage',
  '--drop-stage',
  '--accept-delay',
  '--seed',
  '--fault',
  '--discard',
  '--canary-smtp',
  '--canary-to',
  '--canary-webhook',
  '--canary-token',
]
const FLAG_OPTIONS = ['--refuse', '--no-pipelining', '--help', '-h']

function number(opt: string, raw: string, min: number, max: number, integer: boolean): number {
  const n = Number(raw)
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new UsageError(`${opt} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got "${raw}"`)
  }
  return n
}

function stage(opt: string, raw: string): FaultStage {
  if (!(FAULT_STAGES as readonly string[]).includes(raw)) {
    throw new UsageError(`${opt} must be one of ${FAULT_STAGES.join(', ')}, got "${raw}"`)
  }
  return raw as FaultStage
}

/** Options for FakeBackend from the command line, or 'help'. Throws UsageError naming the bad option. */
export function parseFakeBackendArgs(argv: readonly string[]): FakeBackendOptions | 'help' {
  const values = new Map<string, string[]>()
  const flags = new Set<string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1
    const name = eq === -1 ? arg : arg.slice(0, eq)
    if (FLAG_OPTIONS.includes(name) && eq === -1) {
      flags.add(name)
    } else if (VALUE_OPTIONS.includes(name)) {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
      if (value === undefined) throw new UsageError(`${name} needs a value`)
      values.set(name, [...(values.get(name) ?? []), value])
    } else {
      throw new UsageError(`unknown option "${arg}" (see --help)`)
    }
  }
  if (flags.has('--help') || flags.has('-h')) return 'help'
  const one = (name: string): string | undefined => {
    const v = values.get(name)
    if (v && v.length > 1 && name !== '--fault') throw new UsageError(`${name} is given more than once`)
    return v?.[0]
  }

  const faults: FaultRule[] = []
  const failRate = one('--fail-rate')
  const reply = one('--reply')
  const replyStage = one('--stage')
  if (failRate !== undefined || reply !== undefined || replyStage !== undefined) {
    faults.push({
      stage: replyStage === undefined ? 'dot' : stage('--stage', replyStage),
      action: 'reply',
      reply: reply ?? '451 4.3.0 Temporary failure',
      probability: failRate === undefined ? 1 : number('--fail-rate', failRate, 0, 1, false),
    })
  }
  const stall = one('--stall-stage')
  if (stall !== undefined) faults.push({ stage: stage('--stall-stage', stall), action: 'stall' })
  const drop = one('--drop-stage')
  if (drop !== undefined) faults.push({ stage: stage('--drop-stage', drop), action: 'drop' })
  if (flags.has('--refuse')) faults.push({ stage: 'connect', action: 'refuse' })
  for (const json of values.get('--fault') ?? []) {
    try {
      faults.push(JSON.parse(json) as FaultRule)
    } catch {
      throw new UsageError(`--fault must be a JSON object like '{"stage":"dot","action":"drop"}', got ${json}`)
    }
  }
  try {
    validateFaultRules(faults)
  } catch (err) {
    if (err instanceof FaultRuleError) throw new UsageError(`bad fault option: ${err.message}`)
    throw err
  }

  const opts: FakeBackendOptions = { faults }
  const port = one('--port')
  if (port !== undefined) opts.port = number('--port', port, 0, 65535, true)
  const host = one('--host')
  if (host !== undefined) opts.host = host
  const id = one('--id')
  if (id !== undefined) opts.id = id
  const hostname = one('--hostname')
  if (hostname !== undefined) opts.hostname = hostname
  const delay = one('--accept-delay')
  if (delay !== undefined) opts.acceptDelayMs = number('--accept-delay', delay, 0, 3_600_000, true)
  const seed = one('--seed')
  if (seed !== undefined) opts.seed = number('--seed', seed, 0, 2 ** 32 - 1, true)
  if (flags.has('--no-pipelining')) opts.pipelining = false
  const discard = one('--discard')
  if (discard !== undefined) opts.discardShare = number('--discard', discard, 0, 1, false)
  const smtp = one('--canary-smtp')
  const to = one('--canary-to')
  const webhook = one('--canary-webhook')
  const token = one('--canary-token')
  if (smtp !== undefined && webhook !== undefined)
    throw new UsageError('--canary-smtp and --canary-webhook are two ways back; give one')
  if (smtp !== undefined) {
    const m = /^(.+):(\d+)$/.exec(smtp)
    if (!m) throw new UsageError(`--canary-smtp must be host:port, got "${smtp}"`)
    if (to === undefined) throw new UsageError("--canary-smtp needs --canary-to (mxgate's canary.return_address)")
    opts.canaryReturn = { smtp: { host: m[1]!, port: number('--canary-smtp', m[2]!, 1, 65535, true), to } }
  } else if (webhook !== undefined) {
    if (token === undefined) throw new UsageError('--canary-webhook needs --canary-token (canary.webhook_token)')
    opts.canaryReturn = { webhook: { url: webhook, token } }
  } else if (to !== undefined || token !== undefined)
    throw new UsageError('--canary-to and --canary-token go with --canary-smtp or --canary-webhook')
  return opts
}

/** Runs until SIGINT/SIGTERM (or io.signal); returns the exit code: 0 stopped, 1 could not listen, 2 bad options. */
export async function runFakeBackendCommand(
  argv: string[],
  io: CommandIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let opts: FakeBackendOptions | 'help'
  try {
    opts = parseFakeBackendArgs(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.stderr.write(`mxgate fake-backend: ${err.message}\n`)
    return 2
  }
  if (opts === 'help') {
    io.stdout.write(FAKE_BACKEND_USAGE)
    return 0
  }

  const backend = new FakeBackend(opts)
  backend.on('message', (m) => {
    io.stdout.write(
      `${JSON.stringify({ event: 'message', messageId: m.messageId, from: m.from, to: m.to, size: m.size })}\n`,
    )
  })
  backend.on('fault', (f) => {
    io.stderr.write(`${JSON.stringify({ event: 'fault', stage: f.stage, action: f.action, session: f.sessionId })}\n`)
  })
  try {
    await backend.start()
  } catch (err) {
    io.stderr.write(`mxgate fake-backend: ${err instanceof Error ? err.message : String(err)}\n`)
    await backend.stop()
    return 1
  }
  const { id, host, port } = backend
  io.stdout.write(`${JSON.stringify({ event: 'listening', id, host, port, faults: opts.faults ?? [] })}\n`)

  await new Promise<void>((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done)
      process.off('SIGTERM', done)
      io.signal?.removeEventListener('abort', done)
      resolve()
    }
    process.once('SIGINT', done)
    process.once('SIGTERM', done)
    if (io.signal?.aborted) done()
    else io.signal?.addEventListener('abort', done)
  })
  await backend.stop()
  io.stderr.write(`${JSON.stringify({ event: 'stopped', id, messages: backend.counters.messages })}\n`)
  return 0
}
