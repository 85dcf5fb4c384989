// Messages held only because their DSN could not be sent (no bounce relay, or it refused): every recipient is
// settled, only the bounce is owed. They have their own bound and lifetime, so that bounces nobody can send never
// fill the spool; which of them to give up is decided here (pure), the spool runner does the removing.
import { isHeldDsn } from './catalog'
import type { SpoolEntry } from './format'

export { isHeldDsn }

/** The stage recorded in lastErrors when a message is held for its DSN: its `at` is when the holding began. */
export const HELD_DSN_STAGE = 'dsn'

/** When the message began to wait for its DSN: the last failed DSN attempt recorded, else its arrival. */
export function heldSince(e: SpoolEntry): number {
  for (let i = e.lastErrors.length - 1; i >= 0; i--) {
    const le = e.lastErrors[i]!
    if (le.stage === HELD_DSN_STAGE) return le.at
  }
  return e.receivedAt
}

export interface HeldDsnLimits {
  max: number
  lifetimeMs: number
}

export type DropReason = 'lifetime' | 'max'

/** Which held DSN-only entries to give up now: those past the lifetime, then the oldest beyond `max`. */
export function heldDsnToDrop(
  entries: SpoolEntry[],
  limits: HeldDsnLimits,
  now: number,
): { entry: SpoolEntry; why: DropReason }[] {
  const held = entries.filter(isHeldDsn).sort((a, b) => heldSince(a) - heldSince(b) || (a.id < b.id ? -1 : 1))
  const out: { entry: SpoolEntry; why: DropReason }[] = []
  const keep: SpoolEntry[] = []
  for (const e of held) {
    if (now - heldSince(e) > limits.lifetimeMs) out.push({ entry: e, why: 'lifetime' })
    else keep.push(e)
  }
  const over = keep.length - limits.max
  for (let i = 0; i < over; i++) out.push({ entry: keep[i]!, why: 'max' })
  return out
}
