// The config as `mxgate check-config` prints it: every secret masked (admin tokens, the Redis password), so its
// output can be pasted into a ticket. Paths to secret files (admin.token_file) are not secrets and stay.
import type { MxgateConfig } from './schema'

export const MASK = '***'

/** `scheme://user:secret@host…` → `scheme://user:***@host…`; the password ends at the last `@` (it may hold one). */
export function maskUrlPassword(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)(.*)$/s.exec(url)
  if (m === null) return url
  const [, scheme = '', rest = ''] = m
  const at = rest.lastIndexOf('@')
  if (at === -1) return url
  const userinfo = rest.slice(0, at)
  const colon = userinfo.indexOf(':')
  if (colon === -1) return url
  return `${scheme}${userinfo.slice(0, colon)}:${MASK}@${rest.slice(at + 1)}`
}

/** admin.token as names only: `name:***` per entry (a bare token becomes `***`). */
function maskTokens(text: string): string {
  return text
    .split(',')
    .map((part) => {
      const p = part.trim()
      const colon = p.indexOf(':')
      const name = colon > 0 ? p.slice(0, colon) : ''
      return /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name) ? `${name}:${MASK}` : MASK
    })
    .join(',')
}

/** A copy of the config with its secrets masked; the original is not touched. */
export function redactConfig(cfg: MxgateConfig): MxgateConfig {
  const copy = structuredClone(cfg)
  if (copy.admin.token !== null) copy.admin.token = maskTokens(copy.admin.token)
  if (copy.redis.url !== null) copy.redis.url = maskUrlPassword(copy.redis.url)
  if (copy.canary.webhookToken !== null) copy.canary.webhookToken = MASK
  return copy
}
