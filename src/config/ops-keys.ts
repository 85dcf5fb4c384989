// The settings of how a node meets its operators and its load balancer: shutdown timing. load.ts merges these into
// its table.
import type { MxgateConfig } from './schema'
import { parseDuration } from './units'

type Setter = (cfg: MxgateConfig, raw: string) => true | { error: string }

function duration(set: (c: MxgateConfig, ms: number) => void, min: number, max: number, example: string): Setter {
  return (c, raw) => {
    const ms = parseDuration(raw)
    if (ms === null) return { error: `"${raw}" is not a duration; write e.g. ${example}` }
    if (ms < min || ms > max)
      return { error: `"${raw}" must be from ${min / 1000}s to ${max / 1000}s, e.g. ${example}` }
    set(c, ms)
    return true
  }
}

export const OPS_KEYS: Record<string, Setter> = {
  'smtp.shutdown_grace': duration(
    (c, v) => {
      c.smtp.shutdownGraceMs = v
    },
    0,
    600_000,
    '5s (0 closes the listener at once)',
  ),
  'smtp.shutdown_timeout': duration(
    (c, v) => {
      c.smtp.shutdownTimeoutMs = v
    },
    1000,
    3_600_000,
    '60s',
  ),
}

/** Environment variables for these settings (load.ts adds them to its own). */
export const OPS_ENV: Record<string, string> = {
  MXGATE_SHUTDOWN_GRACE: 'smtp.shutdown_grace',
  MXGATE_SHUTDOWN_TIMEOUT: 'smtp.shutdown_timeout',
}
