// The [verify] settings (recipient verification at RCPT, src/verify/). load.ts merges these into its table and calls
// checkVerify once the whole config is read (the default sender needs smtp.domains).
import type { MxgateConfig } from './schema'
import { parseDuration } from './units'

type Setter = (cfg: MxgateConfig, raw: string) => true | { error: string }

function ms(set: (c: MxgateConfig, v: number) => void, min: number): Setter {
  return (c, raw) => {
    const v = parseDuration(raw)
    if (v === null) return { error: `"${raw}" is not a duration; write e.g. 500ms, 30s, 5m, 2h, 1d` }
    if (v < min) return { error: `"${raw}" is too short; use at least ${min}ms` }
    set(c, v)
    return true
  }
}

function whole(set: (c: MxgateConfig, v: number) => void, min: number, max: number): Setter {
  return (c, raw) => {
    if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max)
      return { error: `"${raw}" must be a whole number from ${min} to ${max}` }
    set(c, Number(raw))
    return true
  }
}

const list = (raw: string): string[] =>
  raw
    .split(/[,\s]+/)
    .map((s) => s.trim().toLowerCase().replace(/\.$/, ''))
    .filter((s) => s !== '')

/** A plain mailbox: no quotes, spaces, routing characters or brackets (what a config file can hold unambiguously). */
const MAILBOX = /^[^\s"<>()@%!,;:\\]+@[a-z0-9.-]+$/i

export const VERIFY_KEYS: Record<string, Setter> = {
  'verify.enabled': (c, raw) => {
    const v = raw.toLowerCase()
    if (['true', 'yes', 'on', '1'].includes(v)) c.verify.enabled = true
    else if (['false', 'no', 'off', '0'].includes(v)) c.verify.enabled = false
    else return { error: `"${raw}" must be true or false` }
    return true
  },
  'verify.sender': (c, raw) => {
    // Empty: the default, derived from smtp.domains once the whole config is read (checkVerify).
    if (raw !== '' && !MAILBOX.test(raw))
      return {
        error: `"${raw}" is not a plain address; write e.g. double-bounce@example.com (some sites refuse <>, so no empty sender)`,
      }
    c.verify.sender = raw
    return true
  },
  'verify.positive_ttl': ms((c, v) => (c.verify.positiveTtlMs = v), 1000),
  'verify.negative_ttl': ms((c, v) => (c.verify.negativeTtlMs = v), 1000),
  'verify.cache_size': whole((c, v) => (c.verify.cacheSize = v), 1, 10_000_000),
  'verify.timeout': ms((c, v) => (c.verify.timeoutMs = v), 100),
  'verify.on_timeout': (c, raw) => {
    if (raw !== 'accept' && raw !== 'defer') return { error: `"${raw}" must be accept or defer` }
    c.verify.onTimeout = raw
    return true
  },
  'verify.harvest_limit': whole((c, v) => (c.verify.harvestLimit = v), 0, 1_000_000),
  'verify.harvest_window': ms((c, v) => (c.verify.harvestWindowMs = v), 1000),
  'verify.skip_domains': (c, raw) => {
    c.verify.skipDomains = [...new Set(list(raw))]
    return true
  },
  'verify.static_recipients': (c, raw) => {
    const addresses = list(raw)
    const bad = addresses.find((a) => !MAILBOX.test(a))
    if (bad !== undefined)
      return { error: `"${bad}" is not a plain address; list e.g. alice@example.com, bob@example.com` }
    c.verify.staticRecipients = [...new Set(addresses)]
    return true
  },
}

/** Whole-config rules and the derived default sender; returns the key and problem, or null. */
export function checkVerify(cfg: MxgateConfig): { key: string; problem: string } | null {
  const v = cfg.verify
  if (v.sender === '') v.sender = `double-bounce@${cfg.smtp.domains[0] ?? cfg.smtp.hostname}`
  const foreign = v.skipDomains.find((d) => !cfg.smtp.domains.includes(d))
  if (foreign !== undefined)
    return { key: 'verify.skip_domains', problem: `"${foreign}" is not one of smtp.domains; list only our domains` }
  for (const a of v.staticRecipients) {
    const domain = a.slice(a.lastIndexOf('@') + 1)
    if (!cfg.smtp.domains.includes(domain))
      return {
        key: 'verify.static_recipients',
        problem: `"${a}": ${domain} is not one of smtp.domains; list only addresses in our domains`,
      }
    if (v.skipDomains.includes(domain))
      return {
        key: 'verify.static_recipients',
        problem: `"${a}": ${domain} is also in verify.skip_domains; a domain is either skipped or listed, not both`,
      }
  }
  return null
}
