// Envelope addresses out of log lines (log.redact_addresses): the local part becomes "***", the domain stays, so a
// line still says which domain and backend were involved but not who. Pure.

/** An address as it appears in log fields, replies and Haraka's lines: local@domain, possibly in <>. */
const ADDRESS_RE = /[^\s<>"'(),;:@[\]]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[^\]\s]+\])/g

export function redactText(s: string): string {
  return s.includes('@') ? s.replace(ADDRESS_RE, '***@$1') : s
}

const MAX_DEPTH = 4

/** Every string in a log object (top-level fields, arrays, nested plain objects) with its addresses redacted. */
export function redactFields<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return redactText(value) as T
  if (depth >= MAX_DEPTH || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map((v) => redactFields(v, depth + 1)) as T
  if (value instanceof Error) {
    const copy = { type: value.name, message: redactText(value.message), code: (value as { code?: unknown }).code }
    return copy as T
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return value
  const out: Record<string, unknown> = {}
  // A parsed address (Haraka's {user, host, original}): the user is the local part.
  const address = 'host' in value && 'user' in value
  for (const [k, v] of Object.entries(value)) {
    out[k] = address && k === 'user' && typeof v === 'string' ? '***' : redactFields(v, depth + 1)
  }
  return out as T
}
