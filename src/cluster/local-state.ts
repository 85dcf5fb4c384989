// The in-process cache both stores read from: overrides, ejections and outcome buckets, with expiry on read.
// The memory store is this plus events; the Redis store keeps it in step with Redis.
import { InvalidStateError, StoreOptionError } from './errors'
import type { AutoEjection, ChangeKind, ManualOverride, StoreTiming } from './types'

export interface Counts {
  ok: number
  fail: number
  /** Attempts in which the backend refused a recipient or the message for good with a message-looking code. */
  refused: number
}

/** Outcome counts per bucket start, per backend id. */
export class OutcomeBuckets {
  private readonly buckets = new Map<number, Map<string, Counts>>()

  constructor(readonly bucketMs: number) {}

  bucketOf(at: number): number {
    return Math.floor(at / this.bucketMs) * this.bucketMs
  }

  add(id: string, ok: number, fail: number, at: number, refused = 0): void {
    this.addToBucket(this.bucketOf(at), id, ok, fail, refused)
  }

  addToBucket(start: number, id: string, ok: number, fail: number, refused = 0): void {
    let bucket = this.buckets.get(start)
    if (bucket === undefined) {
      bucket = new Map()
      this.buckets.set(start, bucket)
    }
    const counts = bucket.get(id)
    if (counts === undefined) bucket.set(id, { ok, fail, refused })
    else {
      counts.ok += ok
      counts.fail += fail
      counts.refused += refused
    }
  }

  /** Replace one bucket wholesale (a fresh read from Redis). */
  replaceBucket(start: number, counts: Map<string, Counts>): void {
    if (counts.size === 0) this.buckets.delete(start)
    else this.buckets.set(start, counts)
  }

  /** Sum of the buckets that overlap [from, to]. */
  sum(id: string, from: number, to: number, into: Counts = { ok: 0, fail: 0, refused: 0 }): Counts {
    for (const [start, bucket] of this.buckets) {
      if (start + this.bucketMs <= from || start > to) continue
      const counts = bucket.get(id)
      if (counts === undefined) continue
      into.ok += counts.ok
      into.fail += counts.fail
      into.refused += counts.refused
    }
    return into
  }

  /** Drop buckets that ended before `before`. */
  prune(before: number): void {
    for (const start of this.buckets.keys()) if (start + this.bucketMs <= before) this.buckets.delete(start)
  }

  /** Take everything out (for a flush); the caller puts back what it could not write. */
  drain(): Map<number, Map<string, Counts>> {
    const all = new Map(this.buckets)
    this.buckets.clear()
    return all
  }

  get size(): number {
    return this.buckets.size
  }
}

/** Counts worth recording: non-negative integers, not both zero. Others are dropped (this path must not throw). */
export function validCounts(ok: number, fail: number, refused = 0): boolean {
  const n = (v: number) => Number.isSafeInteger(v) && v >= 0
  return n(ok) && n(fail) && n(refused) && ok + fail + refused > 0
}

export function validateTiming(timing: StoreTiming): void {
  if (!Number.isInteger(timing.bucketMs) || timing.bucketMs < 100)
    throw new StoreOptionError('bucketMs', `must be an integer of at least 100 ms, got ${timing.bucketMs}`)
  if (!Number.isInteger(timing.retentionMs) || timing.retentionMs < timing.bucketMs)
    throw new StoreOptionError(
      'retentionMs',
      `must be an integer no shorter than bucketMs (${timing.bucketMs}), got ${timing.retentionMs}`,
    )
}

const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
const text = (v: unknown): v is string => typeof v === 'string'

/** Throws InvalidStateError unless `o` is a well-formed override (what other nodes will parse back). */
export function checkOverride(id: string, o: ManualOverride): void {
  checkId(id)
  if (o.state !== 'ejected' && o.state !== 'draining')
    throw new InvalidStateError(id, `override state must be 'ejected' or 'draining', got ${JSON.stringify(o.state)}`)
  if (!text(o.by) || !text(o.reason)) throw new InvalidStateError(id, 'override needs string `by` and `reason`')
  if (!finite(o.at)) throw new InvalidStateError(id, 'override `at` must be epoch milliseconds')
  if (o.until !== null && !finite(o.until))
    throw new InvalidStateError(id, 'override `until` must be epoch milliseconds or null')
}

/** Throws InvalidStateError unless `e` is a well-formed ejection. */
export function checkEjection(id: string, e: AutoEjection): void {
  checkId(id)
  if (!text(e.reason) || !text(e.node)) throw new InvalidStateError(id, 'ejection needs string `reason` and `node`')
  if (!finite(e.at) || !finite(e.until)) throw new InvalidStateError(id, 'ejection `at` and `until` must be epoch ms')
  if (!Number.isInteger(e.count) || e.count < 0)
    throw new InvalidStateError(id, 'ejection `count` must be a non-negative integer')
}

function checkId(id: string): void {
  if (typeof id !== 'string' || id === '')
    throw new InvalidStateError(String(id), 'backend id must be a non-empty string')
}

/** Parse a stored override; null when the text is not one (the caller logs and skips it). */
export function parseOverride(json: string): ManualOverride | null {
  const v = parseObject(json)
  if (v === null) return null
  const o = {
    state: v.state,
    by: v.by,
    reason: v.reason,
    at: v.at,
    until: v.until ?? null,
  } as ManualOverride
  try {
    checkOverride('x', o)
    return o
  } catch {
    return null
  }
}

/** Parse a stored ejection; null when the text is not one. */
export function parseEjection(json: string): AutoEjection | null {
  const v = parseObject(json)
  if (v === null) return null
  const e = { reason: v.reason, at: v.at, until: v.until, count: v.count, node: v.node } as AutoEjection
  try {
    checkEjection('x', e)
    return e
  } catch {
    return null
  }
}

function parseObject(json: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(json)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null
  } catch {
    return null
  }
}

/** Only the fields of the interface, in a fixed order: stored text compares equal when the value does. */
export function encodeOverride(o: ManualOverride): string {
  return JSON.stringify({ state: o.state, by: o.by, reason: o.reason, at: o.at, until: o.until })
}

export function encodeEjection(e: AutoEjection): string {
  return JSON.stringify({ reason: e.reason, at: e.at, until: e.until, count: e.count, node: e.node })
}

type Value<K extends ChangeKind> = K extends 'override' ? ManualOverride : AutoEjection

/** Overrides and ejections by backend id, leaving out (and forgetting) entries whose `until` has passed. */
export class StateMaps {
  private readonly maps = {
    override: new Map<string, ManualOverride>(),
    ejection: new Map<string, AutoEjection>(),
  }

  read<K extends ChangeKind>(kind: K, now = Date.now()): ReadonlyMap<string, Value<K>> {
    const map = this.maps[kind] as Map<string, Value<K>>
    for (const [id, v] of map) if (v.until !== null && v.until <= now) map.delete(id)
    return map
  }

  get<K extends ChangeKind>(kind: K, id: string): Value<K> | undefined {
    return (this.maps[kind] as Map<string, Value<K>>).get(id)
  }

  /** Set or delete; returns true when what a read returns changed. */
  put<K extends ChangeKind>(kind: K, id: string, value: Value<K> | null): boolean {
    const map = this.maps[kind] as Map<string, Value<K>>
    const before = map.get(id)
    if (value === null) return map.delete(id)
    map.set(id, value)
    return before === undefined || encode(kind, before) !== encode(kind, value)
  }

  ids(kind: ChangeKind): string[] {
    return [...this.maps[kind].keys()]
  }
}

export function encode<K extends ChangeKind>(kind: K, v: Value<K>): string {
  return kind === 'override' ? encodeOverride(v as ManualOverride) : encodeEjection(v as AutoEjection)
}

export function check<K extends ChangeKind>(kind: K, id: string, v: Value<K>): void {
  if (kind === 'override') checkOverride(id, v as ManualOverride)
  else checkEjection(id, v as AutoEjection)
}

export function parse<K extends ChangeKind>(kind: K, json: string): Value<K> | null {
  return (kind === 'override' ? parseOverride(json) : parseEjection(json)) as Value<K> | null
}

export type { Value as StateValue }
