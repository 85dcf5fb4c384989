// Checks every admin request passes before auth and routing: no request from a browser page of another origin
// (CSRF, DNS rebinding), and changes only as JSON (a form or text/plain body is what a foreign page can send).
import net from 'node:net'
import { isLoopbackClient } from './auth'
import { HttpError } from './routes'

const WILDCARD = new Set(['0.0.0.0', '::', '[::]', ''])

function hostPart(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}

/**
 * The origins a page served by this listener itself would have: its configured and bound host (and, on loopback or a
 * wildcard bind, localhost, 127.0.0.1 and [::1]) with its port, over http and https.
 */
export function ownOrigins(hosts: string[], port: number): Set<string> {
  const names = new Set<string>()
  for (const h of hosts) {
    const lower = h.toLowerCase()
    if (!WILDCARD.has(lower)) names.add(hostPart(lower))
    if (WILDCARD.has(lower) || lower === 'localhost' || isLoopbackClient(lower.replace(/^\[|\]$/g, ''))) {
      for (const l of ['localhost', '127.0.0.1', '[::1]']) names.add(l)
    }
  }
  const out = new Set<string>()
  for (const n of names) {
    for (const scheme of ['http', 'https']) {
      out.add(`${scheme}://${n}:${port}`)
      if ((scheme === 'http' && port === 80) || (scheme === 'https' && port === 443)) out.add(`${scheme}://${n}`)
    }
  }
  return out
}

/**
 * Refuses a request whose Origin is not one of `own` (403). On a wildcard bind an Origin naming the IP literal the
 * client connected to (its Host header) is also ours; a host *name* there could be a rebinding attacker's.
 */
export function checkOrigin(
  origin: string | undefined,
  host: string | undefined,
  own: Set<string>,
  wildcard: boolean,
): void {
  if (origin === undefined) return
  const o = origin.trim().toLowerCase()
  if (own.has(o)) return
  if (wildcard && host !== undefined) {
    const h = host.trim().toLowerCase()
    const bare = h.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
    if (net.isIP(bare) !== 0 && (o === `http://${h}` || o === `https://${h}`)) return
  }
  const shown = JSON.stringify(origin.length > 200 ? `${origin.slice(0, 200)}…` : origin)
  throw new HttpError(
    403,
    `requests from a web page of another origin are refused (Origin: ${shown}); use the mxgate command or curl, which send no Origin header`,
  )
}

/** Changes take a JSON body only: `Content-Type: application/json` (parameters such as charset allowed), else 415. */
export function checkJsonContentType(contentType: string | undefined): void {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  if (media === 'application/json') return
  const got =
    contentType === undefined ? 'no Content-Type' : `Content-Type ${JSON.stringify(contentType.slice(0, 100))}`
  throw new HttpError(
    415,
    `changes take a JSON body: send "Content-Type: application/json" and a JSON object such as {} (got ${got})`,
    { accept: 'application/json' },
  )
}

export { WILDCARD as WILDCARD_HOSTS }
