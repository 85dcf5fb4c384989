// `mxgate replay` and `mxgate journal ls`: what a backend took in a window, and putting it back into the spool for
// the other backends. They talk to the node's admin API (GET /api/journal, POST /api/replay) like the other ops
// commands; ops.ts parses the options and owns the client.
import type { JournalListView, ReplayView } from '../admin/types'
import { formatBytes } from './duration'
import { safeText, terminalJson } from './terminal-text'
import { parseTimeArg } from './time-arg'

/** A bad --backend/--since/--until: exit 2 with this message, like other usage errors. */
export class JournalArgError extends Error {
  readonly code = 'EUSAGE'
  constructor(message: string) {
    super(message)
    this.name = 'JournalArgError'
  }
}

export interface JournalCtx {
  io: { stdout: { write(s: string): unknown } }
  json: boolean
  /** The API's answer on 2xx, or the exit code once the failure is printed. */
  request(method: 'GET' | 'POST', path: string, body?: object): Promise<{ body: unknown } | number>
  values: Map<string, string>
  flags: Set<string>
  positionals: string[]
  now?: number
}

export const REPLAY_USAGE = 'mxgate replay --backend ID --since TIME [--until TIME] [--dry-run] [--again]'
export const JOURNAL_LS_USAGE = 'mxgate journal ls --backend ID --since TIME [--until TIME]'

function windowArgs(ctx: JournalCtx, usage: string): { backend: string; since: string; until?: string } {
  const backend = ctx.values.get('--backend')?.trim()
  if (!backend) throw new JournalArgError(`--backend is required: the backend whose mail to look at; usage: ${usage}`)
  const sinceText = ctx.values.get('--since')
  if (sinceText === undefined) {
    throw new JournalArgError(`--since is required, e.g. --since 6h or --since 2026-12-04T10:00:00Z; usage: ${usage}`)
  }
  const now = ctx.now ?? Date.now()
  const iso = (option: string, text: string): string => {
    const ms = parseTimeArg(option, text, now)
    if (typeof ms !== 'number') throw new JournalArgError(ms.error)
    return new Date(ms).toISOString()
  }
  const since = iso('--since', sinceText)
  const untilText = ctx.values.get('--until')
  return untilText === undefined ? { backend, since } : { backend, since, until: iso('--until', untilText) }
}

function span(v: { since: number; until: number }): string {
  return `between ${new Date(v.since).toISOString()} and ${new Date(v.until).toISOString()}`
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

export async function replayCommand(ctx: JournalCtx): Promise<number> {
  if (ctx.positionals.length > 0) {
    throw new JournalArgError(`unexpected argument "${ctx.positionals[0]}"; usage: ${REPLAY_USAGE}`)
  }
  const w = windowArgs(ctx, REPLAY_USAGE)
  const body = { ...w, dry_run: ctx.flags.has('--dry-run'), again: ctx.flags.has('--again') }
  const res = await ctx.request('POST', '/api/replay', body)
  if (typeof res === 'number') return res
  const r = res.body as ReplayView
  if (ctx.json) ctx.io.stdout.write(`${terminalJson(r, 2)}\n`)
  else {
    const verb = r.dryRun ? 'would put back' : 'put back'
    const skipped =
      r.skipped > 0 ? `; ${plural(r.skipped, 'message')} an earlier replay sent left out (--again sends them too)` : ''
    ctx.io.stdout.write(
      `node ${safeText(r.node)}: ${verb} ${plural(r.messages, 'message')} (${formatBytes(r.bytes)}) that ${safeText(r.backend)} took ${span(r)} into the spool, for any backend but ${safeText(r.backend)}${skipped}\n`,
    )
    if (r.error !== null) ctx.io.stdout.write(`replay stopped early: ${safeText(r.error)}\n`)
  }
  return r.error === null ? 0 : 1
}

export async function journalCommand(ctx: JournalCtx): Promise<number> {
  const [sub, ...rest] = ctx.positionals
  if (sub !== 'ls' && sub !== 'list') {
    throw new JournalArgError(
      sub === undefined
        ? `which journal command? usage: ${JOURNAL_LS_USAGE}`
        : `unknown journal command "${sub}"; usage: ${JOURNAL_LS_USAGE}`,
    )
  }
  if (rest.length > 0) throw new JournalArgError(`unexpected argument "${rest[0]}"; usage: ${JOURNAL_LS_USAGE}`)
  const w = windowArgs(ctx, JOURNAL_LS_USAGE)
  const q = new URLSearchParams({ backend: w.backend, since: w.since, ...(w.until ? { until: w.until } : {}) })
  const res = await ctx.request('GET', `/api/journal?${q}`)
  if (typeof res === 'number') return res
  const v = res.body as JournalListView
  if (ctx.json) {
    ctx.io.stdout.write(`${terminalJson(v, 2)}\n`)
    return 0
  }
  const waiting = v.entries.filter((e) => !e.replayed)
  const bytes = waiting.reduce((n, e) => n + e.size, 0)
  ctx.io.stdout.write(
    `node ${safeText(v.node)}: ${safeText(v.backend)} took ${plural(v.entries.length, 'message')} ${span(v)}; a replay would send ${plural(waiting.length, 'message')} (${formatBytes(bytes)})\n`,
  )
  for (const e of v.entries) {
    const mark = e.replayed ? '  (replayed)' : ''
    ctx.io.stdout.write(
      `${new Date(e.at).toISOString()}  ${formatBytes(e.size).padStart(9)}  ${safeText(e.from || '<>')} → ${safeText(e.rcpts.join(', '))}  ${safeText(e.messageId ?? '(no Message-ID)')}${mark}\n`,
    )
  }
  return 0
}
