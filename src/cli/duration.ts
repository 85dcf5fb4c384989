// Short human forms for the ops commands: "3m ago", "in 27m", "1h 5m", "2.0 KB".

/** "45s", "3m", "1h 5m", "2d 3h": the two largest units, rounded down. Negative spans count as zero. */
export function formatSpan(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000))
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m`
  const h = Math.floor(m / 60)
  if (h < 24) return m % 60 === 0 ? `${h}h` : `${h}h ${m % 60}m`
  const d = Math.floor(h / 24)
  return h % 24 === 0 ? `${d}d` : `${d}d ${h % 24}h`
}

/** "3m ago" for a past epoch-ms; "just now" within a second (or when the clocks disagree a little). */
export function formatAgo(at: number, now: number): string {
  return now - at < 1000 ? 'just now' : `${formatSpan(now - at)} ago`
}

/** "in 27m" for a future epoch-ms; "now" when it is due. */
export function formatIn(at: number, now: number): string {
  return at - now < 1000 ? 'now' : `in ${formatSpan(at - now)}`
}

/** "512 B", "2.0 KB", "3.4 MB" (binary multiples, like the config's sizes). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KB', 'MB', 'GB', 'TB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(1)} ${units[i]}`
}
