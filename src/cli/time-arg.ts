// --since / --until of `mxgate replay` and `mxgate journal ls`: an ISO 8601 time with a zone, or a duration ago.

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})$/i
const ISO_NO_ZONE_RE = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?$/i
const AGO_RE = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/i
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** Epoch ms for "2026-12-04T10:00:00Z" or "6h" (six hours before `now`); an error text naming the forms otherwise. */
export function parseTimeArg(option: string, text: string, now: number): number | { error: string } {
  const t = text.trim()
  const ago = AGO_RE.exec(t)
  if (ago) return now - Math.round(Number(ago[1]) * (UNIT_MS[ago[2]!.toLowerCase()] ?? 0))
  if (ISO_RE.test(t)) {
    const ms = Date.parse(t)
    if (Number.isFinite(ms)) return ms
  }
  if (ISO_NO_ZONE_RE.test(t)) {
    return {
      error: `${option} "${text}" has no time zone; add one, e.g. ${t.includes('T') ? t : `${t}T00:00:00`}Z for UTC`,
    }
  }
  return {
    error: `${option} "${text}" is neither an ISO 8601 time such as 2026-12-04T10:00:00Z nor a duration ago such as 90m, 6h or 2d`,
  }
}
