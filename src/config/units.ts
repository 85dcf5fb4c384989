// Human-friendly values in config: "30s", "500ms", "5m", "2h", "5d"; "50MB", "512k"; "host:port".

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
}

/** Milliseconds from "30s"-style text; null when it does not parse. A bare number means seconds. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/i.exec(text.trim())
  if (!m) return null
  const unit = (m[2] ?? 's').toLowerCase()
  return wholeOrNull(Number(m[1]) * (DURATION_UNITS[unit] ?? 1000))
}

/** A digit run too long for a double ("999…9", 400 digits) is Infinity, not a setting: null like other junk. */
function wholeOrNull(n: number): number | null {
  const r = Math.round(n)
  return Number.isSafeInteger(r) ? r : null
}

/** Bytes from "50MB"-style text (binary multiples); null when it does not parse. A bare number means bytes. */
export function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?b?)?$/i.exec(text.trim())
  if (!m) return null
  const unit = (m[2] || 'b').toLowerCase()
  const mult = SIZE_UNITS[unit]
  return mult === undefined ? null : wholeOrNull(Number(m[1]) * mult)
}

export interface HostPort {
  host: string
  port: number
}

/** "127.0.0.1:25", "[::1]:25", "mx.example:25" → {host, port}; null when malformed. */
export function parseHostPort(text: string): HostPort | null {
  const t = text.trim()
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(t) ?? /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(t)
  if (!m) return null
  const port = Number(m[2])
  if (port < 1 || port > 65535) return null
  return { host: m[1]!, port }
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
