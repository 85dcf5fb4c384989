// Where the store keeps things in Redis, and the Lua that changes them. docs/cluster.md describes the same layout.
//
//   P overrides               hash  backend id → ManualOverride JSON (no expiry: manual state persists)
//   P overrides:restored      hash  backend id → epoch ms of the last restore (tombstone for last-writer-wins)
//   P ejections               hash  backend id → AutoEjection JSON (until inside; readers skip expired ones)
//   P ejections:cleared       hash  backend id → epoch ms of the last clear (tombstone)
//   P version                 int   bumped by every override/ejection write; change notes carry it
//   P outcomes:<bucketStart>  hash  ok|<id>|<node>, fail|<id>|<node>, refused|<id>|<node> → count; PEXPIREAT end
//                                   of retention (refused: of the ok+fail attempts, those with a permanent refusal)
//   P events                  pub/sub channel of change notes
//   P canary:<token>          string "s" (sent, by the sender) or "r:<epoch ms>" (came back); PX ≈ canary.timeout
//   P canaries                pub/sub channel of returned tokens: {"token", "at", "src"}
//
// In cluster mode every key must hash to one slot (scripts and MULTI touch several), so the prefix becomes a hash
// tag: "mxgate:" → "{mxgate}:".
import type { ChangeKind } from './types'

export interface Keys {
  prefix: string
  values: Record<ChangeKind, string>
  tombstones: Record<ChangeKind, string>
  version: string
  /** node → its NodeInfo as JSON (config version, last seen). */
  nodes: string
  channel: string
  bucket(start: number): string
  canary(token: string): string
  canaryChannel: string
}

export function keyPrefix(prefix: string, cluster: boolean): string {
  if (!cluster || prefix.includes('{')) return prefix
  const base = prefix.replace(/:$/, '')
  return `{${base === '' ? 'mxgate' : base}}:`
}

export function layout(prefix: string): Keys {
  return {
    prefix,
    values: { override: `${prefix}overrides`, ejection: `${prefix}ejections` },
    tombstones: { override: `${prefix}overrides:restored`, ejection: `${prefix}ejections:cleared` },
    version: `${prefix}version`,
    nodes: `${prefix}nodes`,
    channel: `${prefix}events`,
    bucket: (start) => `${prefix}outcomes:${start}`,
    canary: (token) => `${prefix}canary:${token}`,
    canaryChannel: `${prefix}canaries`,
  }
}

/** Outcome counter field: ids and node names are percent-encoded so '|' can separate them. */
export type OutcomeKind = 'ok' | 'fail' | 'refused'
export const OUTCOME_KINDS: readonly OutcomeKind[] = ['ok', 'fail', 'refused']

export function outcomeField(kind: OutcomeKind, id: string, node: string): string {
  return `${kind}|${encodeURIComponent(id)}|${encodeURIComponent(node)}`
}

/** Null for a field this version does not know (an older or newer node's): readers skip it. */
export function parseOutcomeField(field: string): { kind: OutcomeKind; id: string; node: string } | null {
  const parts = field.split('|')
  if (parts.length !== 3) return null
  const [kind, id, node] = parts as [string, string, string]
  if (kind !== 'ok' && kind !== 'fail' && kind !== 'refused') return null
  try {
    return { kind, id: decodeURIComponent(id), node: decodeURIComponent(node) }
  } catch {
    return null
  }
}

/**
 * Set or delete one backend's value, bump the version and publish the note, atomically (so notes arrive in the
 * order the writes happened). In 'lww' mode (replaying a write made while Redis was away) it first compares `at`
 * with what Redis holds, value or tombstone, and keeps the newer. Returns {applied 0|1, version}.
 *
 * KEYS: values hash, tombstones hash, version. ARGV: id, value JSON or '' to delete, at, 'force'|'lww', channel,
 * note JSON (an object; the script puts "v" first).
 */
export const WRITE_SCRIPT = `
local id, value, at, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if mode == 'lww' then
  local current = redis.call('HGET', KEYS[1], id)
  local currentAt = nil
  if current then
    local ok, obj = pcall(cjson.decode, current)
    if ok and type(obj) == 'table' then currentAt = tonumber(obj['at']) end
  else
    currentAt = tonumber(redis.call('HGET', KEYS[2], id))
  end
  if currentAt and currentAt > at then
    return {0, tonumber(redis.call('GET', KEYS[3]) or '0')}
  end
end
if value == '' then
  redis.call('HDEL', KEYS[1], id)
  redis.call('HSET', KEYS[2], id, ARGV[3])
else
  redis.call('HSET', KEYS[1], id, value)
  redis.call('HDEL', KEYS[2], id)
end
local v = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[5], '{"v":' .. v .. ',' .. string.sub(ARGV[6], 2))
return {1, v}
`

/**
 * Delete entries whose "until" has passed (reads skip them anyway; this keeps the hash small). Checked inside the
 * script, so an entry re-set meanwhile by another node is not lost. KEYS: values hash. ARGV: now. Returns count.
 */
export const PRUNE_SCRIPT = `
local now = tonumber(ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local ok, obj = pcall(cjson.decode, all[i + 1])
  if ok and type(obj) == 'table' and type(obj['until']) == 'number' and obj['until'] <= now then
    redis.call('HDEL', KEYS[1], all[i])
    n = n + 1
  end
end
return n
`

/** A change note as published on the channel. */
export interface ChangeNote {
  v: number
  k: ChangeKind
  id: string
  /** The writing store instance (not the node name: two stores may share a node name in tests). */
  src: string
  /** The stored JSON text, or null for a restore/clear. */
  value: string | null
}

export function parseNote(text: string): ChangeNote | null {
  try {
    const n = JSON.parse(text) as Partial<ChangeNote>
    if (typeof n.v !== 'number' || (n.k !== 'override' && n.k !== 'ejection') || typeof n.id !== 'string') return null
    if (typeof n.src !== 'string' || (n.value !== null && typeof n.value !== 'string')) return null
    return n as ChangeNote
  } catch {
    return null
  }
}

/**
 * A canary token came back: mark its key returned (keeping it for the timeout) unless it had come back before, and
 * tell every node when a sender had registered it. An unregistered one (a sender that could not reach Redis when it
 * sent, or no sender at all) is only marked: a sender reads the key when its timeout fires, and made-up tokens are
 * not broadcast. KEYS: the token's key. ARGV: at, ttl ms, channel, note JSON. Returns 'claimed', 'unknown' or
 * 'repeated'.
 */
export const CANARY_RETURN_SCRIPT = `
local old = redis.call('GET', KEYS[1])
if old and string.sub(old, 1, 2) == 'r:' then return 'repeated' end
redis.call('SET', KEYS[1], 'r:' .. ARGV[1], 'PX', ARGV[2])
if not old then return 'unknown' end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 'claimed'
`

/** A returned-token note from the canary channel; null when malformed. */
export function parseCanaryNote(text: string): { token: string; at: number; src: string } | null {
  try {
    const n = JSON.parse(text) as { token?: unknown; at?: unknown; src?: unknown }
    if (typeof n.token !== 'string' || !/^mxc-[0-9a-f]{24}$/.test(n.token)) return null
    if (typeof n.at !== 'number' || !Number.isFinite(n.at) || typeof n.src !== 'string') return null
    return { token: n.token, at: n.at, src: n.src }
  } catch {
    return null
  }
}
