// The [canary] settings (README "Canaries"): where canaries go, where they come back, how often, how long they may
// take. load.ts merges these into its table and calls checkCanary once the whole config is read.
import type { MxgateConfig } from './schema'
import { parseDuration } from './units'

type Setter = (cfg: MxgateConfig, raw: string) => true | { error: string }

/** A plain mailbox: dot-atom local part (no quotes, no routing characters) @ a domain name. */
const MAILBOX_RE =
  /^[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$&'*+/=?^_`{|}~-]+)*@([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/

/** `User@Example.COM.` → `User@example.com`; null when it is not a plain mailbox. Empty → 'empty'. */
export function parseMailbox(raw: string): string | null | 'empty' {
  const text = raw.trim().replace(/^<(.*)>$/, '$1')
  if (text === '') return 'empty'
  const at = text.lastIndexOf('@')
  if (at <= 0) return null
  const addr = `${text.slice(0, at)}@${text
    .slice(at + 1)
    .toLowerCase()
    .replace(/\.$/, '')}`
  return MAILBOX_RE.test(addr) ? addr : null
}

function mailbox(set: (c: MxgateConfig, v: string | null) => void, example: string): Setter {
  return (c, raw) => {
    const v = parseMailbox(raw)
    if (v === null) return { error: `"${raw}" is not a plain mailbox; write e.g. ${example} (or leave it empty)` }
    set(c, v === 'empty' ? null : v)
    return true
  }
}

function ms(set: (c: MxgateConfig, v: number) => void, min: number): Setter {
  return (c, raw) => {
    const v = parseDuration(raw)
    if (v === null) return { error: `"${raw}" is not a duration; write e.g. 250ms, 10s, 2m` }
    if (v < min) return { error: `"${raw}" is too short; use at least ${min}ms` }
    set(c, v)
    return true
  }
}

export const CANARY_KEYS: Record<string, Setter> = {
  'canary.address': mailbox((c, v) => (c.canary.address = v), 'canary@example.com'),
  'canary.return_address': mailbox((c, v) => (c.canary.returnAddress = v), 'canary-return@example.com'),
  'canary.interval': ms((c, v) => (c.canary.intervalMs = v), 100),
  'canary.timeout': ms((c, v) => (c.canary.timeoutMs = v), 100),
  'canary.webhook_token': (c, raw) => {
    const v = raw.trim()
    if (v !== '' && !/^[A-Za-z0-9._~+/=-]{16,}$/.test(v))
      return { error: 'must be at least 16 of A-Z a-z 0-9 . _ ~ + / = - (e.g. openssl rand -hex 24)' }
    c.canary.webhookToken = v === '' ? null : v
    return true
  },
  'canary.probation_returns': (c, raw) => {
    if (!/^\d+$/.test(raw) || Number(raw) > 1000) return { error: `"${raw}" must be a whole number from 0 to 1000` }
    c.canary.probationReturns = Number(raw)
    return true
  },
}

/** Environment variables for the [canary] settings. */
export const CANARY_ENV: Record<string, string> = {
  MXGATE_CANARY_ADDRESS: 'canary.address',
  MXGATE_CANARY_RETURN: 'canary.return_address',
  MXGATE_CANARY_INTERVAL: 'canary.interval',
  MXGATE_CANARY_TIMEOUT: 'canary.timeout',
  MXGATE_CANARY_WEBHOOK_TOKEN: 'canary.webhook_token',
}

const domainOf = (addr: string) => addr.slice(addr.lastIndexOf('@') + 1)

/** Whole-config rules for [canary]; returns the key and problem, or null. */
export function checkCanary(cfg: MxgateConfig): { key: string; problem: string } | null {
  const k = cfg.canary
  const domains = cfg.smtp.domains
  if (k.address === null) {
    if (k.returnAddress !== null)
      return {
        key: 'canary.return_address',
        problem: 'is set but canary.address is not; canaries are off without an address (set both, or neither)',
      }
    return null
  }
  if (!domains.includes(domainOf(k.address)))
    return {
      key: 'canary.address',
      problem: `${k.address} is not in one of mxgate's domains (${domains.join(', ')}); canaries must go to a mailbox the backends deliver for us`,
    }
  if (k.returnAddress !== null) {
    if (!domains.includes(domainOf(k.returnAddress)))
      return {
        key: 'canary.return_address',
        problem: `${k.returnAddress} is not in one of mxgate's domains (${domains.join(', ')}); mxgate takes returns only for its own domains`,
      }
    if (k.returnAddress.toLowerCase() === k.address.toLowerCase())
      return {
        key: 'canary.return_address',
        problem:
          'must differ from canary.address: mxgate consumes mail to the return address, so canaries to it would never reach a backend',
      }
  }
  if (k.returnAddress === null && k.webhookToken === null)
    return {
      key: 'canary.address',
      problem:
        'canaries are on but nothing can bring them back; set canary.return_address (MXGATE_CANARY_RETURN) or canary.webhook_token',
    }
  if (k.timeoutMs < k.intervalMs)
    return {
      key: 'canary.timeout',
      problem: `must not be below canary.interval (${k.intervalMs}ms): a canary needs time to come back before the next`,
    }
  return null
}
