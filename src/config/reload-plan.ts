// What a reload changes: the difference between the running settings and a freshly loaded, validated file, sorted
// into what applies live, what needs a restart, and the backends added, removed or re-weighted. Pure: the engine
// applies the plan, the reply reports it.
import { createHash } from 'node:crypto'
import { redactConfig } from './redact'
import type { BackendConfig, MxgateConfig } from './schema'

type Section = Exclude<keyof MxgateConfig, 'files' | 'backends'>

/**
 * Keys built into something at start (a listener, a process, a directory, a connection, a timer, a client's
 * options): a reload reports them as "needs a restart" and keeps running with the old value.
 */
export const RESTART_KEYS: ReadonlySet<string> = new Set([
  'smtp.listen',
  'smtp.workers',
  // Haraka's inactivity timer and the client's EHLO name are set once.
  'smtp.idleTimeoutMs',
  'smtp.hostname',
  // Haraka's plugin timeout is computed from it at start and must stay above it.
  'relay.deadlineMs',
  'client.*',
  // opossum builds its rolling window once.
  'breaker.windowMs',
  'breaker.windowBuckets',
  // The outcome buckets (and the detector's period) are laid out once, locally and in Redis.
  'detector.bucketMs',
  'detector.retentionMs',
  'admin.*',
  'spool.dir',
  'spool.fsync',
  'spool.bounceRelay',
  'spool.heldDsnMax',
  'spool.heldDsnLifetimeMs',
  'redis.*',
  // The shutdown timing is fixed when the signal handlers go in.
  'smtp.shutdownGraceMs',
  'smtp.shutdownTimeoutMs',
  // The journal, the logger, the verifier (cache, harvest guard, routes) and the canary scheduler (and the
  // webhook's token) are built from their settings at start.
  'journal.*',
  'log.*',
  'verify.*',
  'canary.*',
])

export function needsRestart(key: string): boolean {
  return RESTART_KEYS.has(key) || RESTART_KEYS.has(`${key.split('.')[0]}.*`)
}

export interface KeyChange {
  /** section.key as in the typed config (smtp.maxRecipients). */
  key: string
  from: unknown
  to: unknown
}

export interface ReloadPlan {
  added: BackendConfig[]
  removed: string[]
  reweighted: { id: string; from: number; to: number }[]
  /** Settings that change in place. */
  live: KeyChange[]
  /** Settings that keep their old value until a restart. */
  restart: KeyChange[]
  /** Things the operator should know (the pool fixed by MXGATE_BACKENDS, an address change). */
  notes: string[]
}

export interface PlanOptions {
  /** The pool came from MXGATE_BACKENDS: a reload cannot change it (a running process's environment is fixed). */
  poolFromEnv: boolean
  /** The file a [backend.ID] section should go in (for the note). */
  file: string
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)

/** Compares the running settings with new ones. Values are already validated: this only sorts the differences. */
export function planReload(live: MxgateConfig, next: MxgateConfig, opts: PlanOptions): ReloadPlan {
  const plan: ReloadPlan = { added: [], removed: [], reweighted: [], live: [], restart: [], notes: [] }
  const sections = Object.keys(next).filter((k) => k !== 'files' && k !== 'backends') as Section[]
  for (const section of sections) {
    const a = live[section] as unknown as Record<string, unknown>
    const b = next[section] as unknown as Record<string, unknown>
    for (const key of Object.keys(b)) {
      if (same(a[key], b[key])) continue
      const change = { key: `${section}.${key}`, from: a[key], to: b[key] }
      ;(needsRestart(change.key) ? plan.restart : plan.live).push(change)
    }
  }
  if (opts.poolFromEnv) {
    plan.notes.push(
      `the backend pool comes from MXGATE_BACKENDS, which a reload cannot change (a running process keeps its ` +
        `environment); to change the pool without restarts, list the backends as [backend.ID] sections in ` +
        `${opts.file}, unset MXGATE_BACKENDS and restart once`,
    )
    return plan
  }
  const before = new Map(live.backends.map((b) => [b.id, b]))
  const after = new Map(next.backends.map((b) => [b.id, b]))
  for (const [id, b] of after) {
    const old = before.get(id)
    if (old === undefined) plan.added.push(b)
    else if (old.host !== b.host || old.port !== b.port || old.servername !== b.servername) {
      plan.notes.push(
        `backend ${id} changed its address (${old.host}:${old.port} → ${b.host}:${b.port}); not applied: give ` +
          `the new server a new id (add it, remove ${id}) so it goes through probation, or restart`,
      )
    } else if (old.weight !== b.weight) plan.reweighted.push({ id, from: old.weight, to: b.weight })
  }
  for (const id of before.keys()) if (!after.has(id)) plan.removed.push(id)
  return plan
}

/** True when the plan changes nothing at all. */
export function planIsEmpty(p: ReloadPlan): boolean {
  return p.added.length + p.removed.length + p.reweighted.length + p.live.length + p.restart.length === 0
}

/**
 * A short hash of the effective settings (secrets masked), leaving out what is each node's own (file names, listen
 * addresses, spool directory, token file): nodes running the same settings show the same version in `mxgate status`.
 */
export function configVersion(cfg: MxgateConfig): string {
  const { files: _files, ...rest } = redactConfig(cfg)
  const shared = {
    ...rest,
    smtp: { ...rest.smtp, listen: null },
    admin: { ...rest.admin, listen: null, tokenFile: null },
    spool: { ...rest.spool, dir: null },
    journal: { ...rest.journal, dir: null },
  }
  return createHash('sha256').update(JSON.stringify(shared)).digest('hex').slice(0, 12)
}
