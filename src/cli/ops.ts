// `mxgate status | eject | drain | restore | spool … | replay | journal ls`: operator commands. They talk to a node's admin API only.
// Exit codes: 0 done; 1 refused (401/403/409/5xx) or node unreachable; 2 usage error, invalid request (400/413/415),
// unknown backend/message, or a --token-file that cannot be read.
import { setTimeout as sleep } from 'node:timers/promises'
import { TokenFileError } from '../admin/token-file'
import type { BackendView, NodeView, ReloadView, SpoolItemView } from '../admin/types'
import {
  AdminClient,
  AdminProtocolError,
  type AdminResponse,
  AdminUnreachableError,
  AdminUrlError,
  DEFAULT_ADMIN_URL,
} from './admin-client'
import { backendDetail } from './backend-detail'
import { JournalArgError, journalCommand, replayCommand } from './journal-ops'
import { nodesText, reloadText } from './reload-detail'
import { type SpoolDetail, spoolDetail } from './spool-detail'
import { nextAttemptText, spoolTable, statusTable, type TableStyle, wantsColour, whyText } from './table'
import { safeText, terminalJson } from './terminal-text'
import { chooseToken, type TokenChoice } from './token-source'

export const OPS_COMMANDS = ['status', 'eject', 'drain', 'restore', 'spool', 'replay', 'journal', 'reload'] as const

export const OPS_USAGE = `operator commands (talk to a node's admin API):
  status [--json] [--watch [SECONDS]]   backends: state, why, since, in flight, success ratio, msgs/min
  status ID [--json]                    one backend in full, with the detector's evidence
  eject ID --reason TEXT [--for 30m]    take a backend out on every node (until restored, or for a while)
  drain ID [--reason TEXT]              no new messages to it; messages in flight finish
  restore ID                            clear manual and automatic ejection; it ramps up again
  spool ls [--json]                     messages waiting in this node's spool
  spool show ID                         one message: envelope, attempts, last errors
  spool flush [ID]                      retry one message, or all, now
  spool hold ID | release ID            stop / resume retrying a message
  spool bounce ID                       give up: DSN to the sender, remove it
  journal ls --backend ID --since TIME [--until TIME]
                                        what the backend took in that window (what a replay would send)
  replay --backend ID --since TIME [--until TIME] [--dry-run] [--again]
                                        put what the backend took back into the spool, for the other backends;
                                        TIME is ISO 8601 (2026-12-04T10:00:00Z) or a duration ago (6h, 2d)
  reload [--reason TEXT]                re-read the configuration (as SIGHUP does); a bad file changes nothing

  --admin URL    the node's admin API (default MXGATE_ADMIN_URL or ${DEFAULT_ADMIN_URL})
  --token T      admin token for changes and spool reads (default MXGATE_ADMIN_TOKEN)
  --token-file F read the token from F (default MXGATE_ADMIN_TOKEN_FILE, else the file mxgate start
                 generated, <spool dir>/admin.token or admin.token_file, when --admin is loopback)
  --json         print the API's JSON instead of text
`

export interface OpsIo {
  stdout: { write(s: string): unknown; isTTY?: boolean; columns?: number }
  stderr: { write(s: string): unknown }
  env?: NodeJS.ProcessEnv
  /** Stops --watch like SIGINT does. */
  signal?: AbortSignal
  /** Stops --watch after this many redraws (tests); MXGATE_WATCH_MAX does the same from the environment. */
  maxWatchIterations?: number
  /** The default token file (tests); undefined = the one `mxgate start` uses with the same settings; null = none. */
  tokenFile?: string | null
}

class UsageError extends Error {
  readonly code = 'EUSAGE'
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

interface Parsed {
  positionals: string[]
  values: Map<string, string>
  flags: Set<string>
}

const COMMON_VALUES = ['--admin', '--token', '--token-file']
const OPTION_ARGS: Record<string, string> = {
  '--admin': ' URL',
  '--token': ' T',
  '--token-file': ' F',
  '--reason': ' TEXT',
  '--for': ' DURATION',
  '--watch': ' [SECONDS]',
  '--backend': ' ID',
  '--since': ' TIME',
  '--until': ' TIME',
}
const SPEC: Record<string, { values: string[]; flags: string[] }> = {
  status: { values: [], flags: ['--json', '--watch'] },
  eject: { values: ['--reason', '--for'], flags: ['--json'] },
  drain: { values: ['--reason'], flags: ['--json'] },
  restore: { values: [], flags: ['--json'] },
  spool: { values: [], flags: ['--json'] },
  replay: { values: ['--backend', '--since', '--until'], flags: ['--json', '--dry-run', '--again'] },
  journal: { values: ['--backend', '--since', '--until'], flags: ['--json'] },
  reload: { values: ['--reason'], flags: ['--json'] },
}

/** `--opt value`, `--opt=value`, flags, positionals; `--watch` takes an optional number of seconds. */
function parseArgs(cmd: string, argv: string[]): Parsed {
  const spec = SPEC[cmd]!
  const values = [...COMMON_VALUES, ...spec.values]
  const out: Parsed = { positionals: [], values: new Map(), flags: new Set() }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === '--') {
      out.positionals.push(...argv.slice(i + 1))
      break
    }
    if (arg === '-h' || arg === '--help') {
      out.flags.add('--help')
      continue
    }
    if (!arg.startsWith('--')) {
      out.positionals.push(arg)
      continue
    }
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg : arg.slice(0, eq)
    if (values.includes(name)) {
      const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
      if (value === undefined || (eq === -1 && value.startsWith('--'))) throw new UsageError(`${name} needs a value`)
      out.values.set(name, value)
    } else if (name === '--watch') {
      out.flags.add(name)
      const next = eq === -1 ? argv[i + 1] : arg.slice(eq + 1)
      if (next !== undefined && /^\d+(\.\d+)?$/.test(next)) {
        out.values.set('--watch', next)
        if (eq === -1) i++
      } else if (eq !== -1) throw new UsageError(`--watch takes a number of seconds, got "${next}"`)
    } else if (spec.flags.includes(name) && eq === -1) {
      out.flags.add(name)
    } else {
      const known = [...values, ...spec.flags].map((o) => `${o}${OPTION_ARGS[o] ?? ''}`).join(', ')
      throw new UsageError(`unknown option ${name}; ${cmd} takes ${known}`)
    }
  }
  return out
}

function oneId(p: Parsed, what: string, usage: string): string {
  const [id, ...extra] = p.positionals
  if (id === undefined || id === '') throw new UsageError(`which ${what}? usage: ${usage}`)
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"; usage: ${usage}`)
  return id
}

function noPositionals(p: Parsed, usage: string): void {
  if (p.positionals.length > 0) throw new UsageError(`unexpected argument "${p.positionals[0]}"; usage: ${usage}`)
}

/** What a 401/403 line adds about the token: none was sent (and how to send one), or where the sent one came from. */
function tokenHint(t: TokenChoice): string {
  if (t.source !== null) return ` (token from ${t.source})`
  const why = t.note === null ? '' : `; ${t.note}`
  return ` (no token was sent: pass --token T or --token-file F, or set MXGATE_ADMIN_TOKEN${why})`
}

/** A non-2xx answer: prints one line naming the node, the status and the server's message; returns the exit code. */
function failed(name: string, client: AdminClient, res: AdminResponse, io: OpsIo, token: TokenChoice): number {
  const body = res.body as { error?: unknown }
  const error = safeText(typeof body?.error === 'string' ? body.error : JSON.stringify(res.body))
  if (res.status === 400 || res.status === 404 || res.status === 413 || res.status === 415) {
    io.stderr.write(`mxgate ${name}: ${error}\n`)
    return 2
  }
  if (res.status === 401 || res.status === 403) {
    io.stderr.write(`mxgate ${name}: refused by ${client.display} (${res.status}): ${error}${tokenHint(token)}\n`)
    return 1
  }
  const kind = res.status >= 500 ? 'failed' : 'refused'
  io.stderr.write(`mxgate ${name}: the admin API at ${client.display} ${kind} (${res.status}): ${error}\n`)
  return 1
}

interface Ctx {
  name: string
  client: AdminClient
  token: TokenChoice
  io: OpsIo
  json: boolean
  style: TableStyle
}

async function call(ctx: Ctx, method: 'GET' | 'POST', path: string, body?: object): Promise<AdminResponse | number> {
  const res = await ctx.client.request(method, path, body)
  return res.status >= 200 && res.status < 300 ? res : failed(ctx.name, ctx.client, res, ctx.io, ctx.token)
}

function printJson(ctx: Ctx, value: unknown): void {
  ctx.io.stdout.write(`${terminalJson(value, 2)}\n`)
}

const enc = encodeURIComponent

function backendLine(verb: string, b: BackendView, now: number): string {
  return `${verb} ${safeText(b.id)}: now ${safeText(b.state)}; ${safeText(whyText(b, now))}\n`
}

async function status(ctx: Ctx, p: Parsed): Promise<number> {
  if (p.positionals.length > 0 && !p.flags.has('--watch')) return statusOf(ctx, oneId(p, 'backend', 'mxgate status ID'))
  noPositionals(p, 'mxgate status [ID] [--json] [--watch [SECONDS]]')
  if (!p.flags.has('--watch')) return statusOnce(ctx, null)
  const seconds = Number(p.values.get('--watch') ?? '2')
  if (!(seconds >= 0.1 && seconds <= 3600)) throw new UsageError(`--watch takes 0.1 to 3600 seconds, got ${seconds}`)
  const envMax = Number(ctx.io.env?.MXGATE_WATCH_MAX)
  const max = ctx.io.maxWatchIterations ?? (Number.isInteger(envMax) && envMax > 0 ? envMax : Number.POSITIVE_INFINITY)
  const stop = new AbortController()
  const onSigint = () => stop.abort()
  process.once('SIGINT', onSigint)
  ctx.io.signal?.addEventListener('abort', onSigint, { once: true })
  let code = 0
  try {
    for (let i = 0; i < max && !stop.signal.aborted; i++) {
      code = await statusOnce(ctx, seconds)
      if (i + 1 >= max) break
      await sleep(seconds * 1000, undefined, { signal: stop.signal }).catch(() => undefined)
    }
  } finally {
    process.off('SIGINT', onSigint)
    ctx.io.signal?.removeEventListener('abort', onSigint)
  }
  return stop.signal.aborted ? 0 : code
}

/** `mxgate status ID`: one backend with the detector's evidence. */
async function statusOf(ctx: Ctx, id: string): Promise<number> {
  const res = await call(ctx, 'GET', `/api/backends/${enc(id)}`)
  if (typeof res === 'number') return res
  if (ctx.json) {
    printJson(ctx, res.body)
    return 0
  }
  const body = res.body as BackendView & { node?: string }
  ctx.io.stdout.write(backendDetail(body.node ?? '', body, res.serverNow ?? Date.now()))
  return 0
}

/** One status frame; in watch mode a TTY is redrawn in place and JSON is one line per frame. */
async function statusOnce(ctx: Ctx, everySeconds: number | null): Promise<number> {
  const watching = everySeconds !== null
  let res: AdminResponse | number
  try {
    res = await call(ctx, 'GET', '/api/backends')
  } catch (err) {
    if (!watching || !(err instanceof AdminUnreachableError)) throw err
    ctx.io.stderr.write(`mxgate status: ${err.message}\n`)
    return 1
  }
  if (typeof res === 'number') return res
  if (ctx.json) {
    ctx.io.stdout.write(watching ? `${terminalJson(res.body)}\n` : `${terminalJson(res.body, 2)}\n`)
    return 0
  }
  const body = res.body as { node: string; backends: BackendView[]; configVersion?: string; nodes?: NodeView[] }
  const now = res.serverNow ?? Date.now()
  const table = statusTable(body.node, body.backends, now, ctx.style) + nodesText(body.configVersion, body.nodes, now)
  const clear = watching && ctx.io.stdout.isTTY ? '\u001b[H\u001b[2J' : ''
  const stamp = watching ? `${new Date(now).toISOString()}  every ${everySeconds}s, Ctrl-C stops\n` : ''
  ctx.io.stdout.write(`${clear}${stamp}${table}${watching && !clear ? '\n' : ''}`)
  return 0
}

async function eject(ctx: Ctx, p: Parsed): Promise<number> {
  const usage = 'mxgate eject ID --reason TEXT [--for 30m]'
  const id = oneId(p, 'backend', usage)
  const reason = p.values.get('--reason')?.trim()
  if (!reason) throw new UsageError(`--reason is required: say why you eject ${id}; usage: ${usage}`)
  const forText = p.values.get('--for')
  const body = forText === undefined ? { reason } : { reason, for: forText }
  const res = await call(ctx, 'POST', `/api/backends/${enc(id)}/eject`, body)
  if (typeof res === 'number') return res
  if (ctx.json) printJson(ctx, res.body)
  else ctx.io.stdout.write(backendLine('ejected', res.body as BackendView, res.serverNow ?? Date.now()))
  return 0
}

async function drain(ctx: Ctx, p: Parsed): Promise<number> {
  const id = oneId(p, 'backend', 'mxgate drain ID [--reason TEXT]')
  const reason = p.values.get('--reason')?.trim()
  const res = await call(ctx, 'POST', `/api/backends/${enc(id)}/drain`, reason ? { reason } : {})
  if (typeof res === 'number') return res
  if (ctx.json) printJson(ctx, res.body)
  else ctx.io.stdout.write(backendLine('draining', res.body as BackendView, res.serverNow ?? Date.now()))
  return 0
}

async function restore(ctx: Ctx, p: Parsed): Promise<number> {
  const id = oneId(p, 'backend', 'mxgate restore ID')
  const res = await call(ctx, 'POST', `/api/backends/${enc(id)}/restore`, {})
  if (typeof res === 'number') return res
  if (ctx.json) printJson(ctx, res.body)
  else ctx.io.stdout.write(backendLine('restored', res.body as BackendView, res.serverNow ?? Date.now()))
  return 0
}

async function spool(ctx: Ctx, p: Parsed): Promise<number> {
  const [sub, ...rest] = p.positionals
  const sp: Parsed = { ...p, positionals: rest }
  const usageOf = (u: string) => `mxgate spool ${u}`
  switch (sub) {
    case 'ls':
    case 'list': {
      noPositionals(sp, usageOf('ls [--json]'))
      const res = await call(ctx, 'GET', '/api/spool')
      if (typeof res === 'number') return res
      if (ctx.json) printJson(ctx, res.body)
      else {
        const body = res.body as { node: string; messages: SpoolItemView[] }
        ctx.io.stdout.write(spoolTable(body.node, body.messages, res.serverNow ?? Date.now(), ctx.style))
      }
      return 0
    }
    case 'show': {
      const id = oneId(sp, 'message', usageOf('show ID'))
      const res = await call(ctx, 'GET', `/api/spool/${enc(id)}`)
      if (typeof res === 'number') return res
      if (ctx.json) printJson(ctx, res.body)
      else ctx.io.stdout.write(spoolDetail(res.node, res.body as SpoolDetail, res.serverNow ?? Date.now()))
      return 0
    }
    case 'flush': {
      if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"; usage: ${usageOf('flush [ID]')}`)
      const res = await call(ctx, 'POST', '/api/spool/flush', rest[0] === undefined ? {} : { id: rest[0] })
      if (typeof res === 'number') return res
      const body = res.body as { node: string; scheduled: number }
      if (ctx.json) printJson(ctx, body)
      else
        ctx.io.stdout.write(
          `node ${safeText(body.node)}: ${body.scheduled} message${body.scheduled === 1 ? '' : 's'} scheduled for retry now\n`,
        )
      return 0
    }
    case 'hold':
    case 'release': {
      const id = oneId(sp, 'message', usageOf(`${sub} ID`))
      const res = await call(ctx, 'POST', `/api/spool/${enc(id)}/${sub}`, {})
      if (typeof res === 'number') return res
      const m = res.body as SpoolItemView
      if (ctx.json) printJson(ctx, m)
      else {
        const next = nextAttemptText(m, res.serverNow ?? Date.now())
        ctx.io.stdout.write(`${sub === 'hold' ? 'held' : 'released'} ${safeText(m.id)}: next attempt ${next}\n`)
      }
      return 0
    }
    case 'bounce': {
      const id = oneId(sp, 'message', usageOf('bounce ID'))
      const res = await call(ctx, 'POST', `/api/spool/${enc(id)}/bounce`, {})
      if (typeof res === 'number') return res
      if (ctx.json) printJson(ctx, res.body)
      else
        ctx.io.stdout.write(`bounced ${safeText(id)}: removed from the spool; a DSN goes to its sender (none for <>)\n`)
      return 0
    }
    case undefined:
      throw new UsageError('which spool command? expected ls, show, flush, hold, release or bounce')
    default:
      throw new UsageError(`unknown spool command "${sub}"; expected ls, show, flush, hold, release or bounce`)
  }
}

/** `mxgate reload`: what changed, what needs a restart, and anything the operator should know. */
async function reload(ctx: Ctx, p: Parsed): Promise<number> {
  noPositionals(p, 'mxgate reload [--reason TEXT]')
  const reason = p.values.get('--reason')?.trim()
  const res = await call(ctx, 'POST', '/api/reload', reason ? { reason } : {})
  if (typeof res === 'number') return res
  if (ctx.json) {
    printJson(ctx, res.body)
    return 0
  }
  ctx.io.stdout.write(reloadText(res.body as ReloadView))
  return 0
}

const HANDLERS: Record<(typeof OPS_COMMANDS)[number], (ctx: Ctx, p: Parsed) => Promise<number>> = {
  status,
  eject,
  drain,
  restore,
  spool,
  replay: (ctx, p) => replayCommand(journalCtx(ctx, p)),
  journal: (ctx, p) => journalCommand(journalCtx(ctx, p)),
  reload,
}

function journalCtx(ctx: Ctx, p: Parsed) {
  return {
    io: ctx.io,
    json: ctx.json,
    request: (method: 'GET' | 'POST', path: string, body?: object) => call(ctx, method, path, body),
    values: p.values,
    flags: p.flags,
    positionals: p.positionals,
  }
}

function isOpsCommand(cmd: string): cmd is (typeof OPS_COMMANDS)[number] {
  return (OPS_COMMANDS as readonly string[]).includes(cmd)
}

/** Runs one ops command; resolves the exit code. Every error path prints one line on stderr. */
export async function runOpsCommand(cmd: string, argv: string[], io: OpsIo = process): Promise<number> {
  const env = io.env ?? process.env
  const name =
    (cmd === 'spool' || cmd === 'journal') && argv[0] !== undefined && !argv[0].startsWith('-')
      ? `${cmd} ${argv[0]}`
      : cmd
  try {
    if (!isOpsCommand(cmd)) throw new UsageError(`"${cmd}" is not an ops command; expected ${OPS_COMMANDS.join(', ')}`)
    const p = parseArgs(cmd, argv)
    if (p.flags.has('--help')) {
      io.stdout.write(OPS_USAGE)
      return 0
    }
    const envToken = env.MXGATE_ADMIN_TOKEN
    if (!p.values.has('--token') && envToken?.includes(',')) {
      throw new UsageError('MXGATE_ADMIN_TOKEN holds a list of tokens (name:token,…); pass one token with --token T')
    }
    const adminUrl = p.values.get('--admin') ?? (env.MXGATE_ADMIN_URL || DEFAULT_ADMIN_URL)
    const probe = new AdminClient(adminUrl, undefined)
    const token = chooseToken({
      flag: p.values.get('--token'),
      fileFlag: p.values.get('--token-file'),
      env,
      admin: probe.base,
      ...(io.tokenFile === undefined ? {} : { defaultFile: io.tokenFile }),
    })
    const client = new AdminClient(adminUrl, token.token)
    const style: TableStyle = { colour: wantsColour(io.stdout.isTTY, env) }
    if (io.stdout.isTTY && io.stdout.columns !== undefined) style.columns = io.stdout.columns
    return await HANDLERS[cmd]({ name, client, token, io, json: p.flags.has('--json'), style }, p)
  } catch (err) {
    if (
      err instanceof UsageError ||
      err instanceof JournalArgError ||
      err instanceof AdminUrlError ||
      err instanceof TokenFileError
    ) {
      io.stderr.write(`mxgate ${name}: ${err.message}\n`)
      return 2
    }
    if (err instanceof AdminUnreachableError || err instanceof AdminProtocolError) {
      io.stderr.write(`mxgate ${name}: ${err.message}\n`)
      return 1
    }
    throw err
  }
}
