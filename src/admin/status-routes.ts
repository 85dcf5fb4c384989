// The status page and the two reads it refreshes from. All three answer without a token: they carry states, counts
// and ages, never an envelope address (the page reads /api/spool, which needs a token, only when given one).
import { randomBytes } from 'node:crypto'
import { HttpError, type Route } from './routes'
import { statusPage } from './status-page'

export const MAX_HISTORY_MINUTES = 30

/** `minutes` of GET /api/history: a whole number from 1 to 30, default 30. */
export function historyMinutesOf(raw: string | null): number {
  if (raw === null || raw === '') return MAX_HISTORY_MINUTES
  if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_HISTORY_MINUTES) {
    throw new HttpError(
      400,
      `minutes must be a whole number from 1 to ${MAX_HISTORY_MINUTES}; got ${JSON.stringify(raw.slice(0, 40))}`,
    )
  }
  return Number(raw)
}

/**
 * The page's headers: only its own inline script (by nonce) runs, it fetches only from this origin, no frame may hold
 * it (clickjacking an eject button is not possible anyway: the page changes nothing), no referrer leaves it.
 */
function pageHeaders(nonce: string): Record<string, string> {
  return {
    'content-security-policy': [
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      "style-src 'unsafe-inline'",
      "connect-src 'self'",
      'img-src data:',
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
  }
}

export const STATUS_ROUTES: readonly Route[] = [
  {
    method: 'GET',
    pattern: '/',
    handle: ({ port }) => {
      const nonce = randomBytes(16).toString('base64')
      return {
        text: statusPage({ node: port.nodeName, nonce }),
        contentType: 'text/html; charset=utf-8',
        headers: pageHeaders(nonce),
      }
    },
  },
  {
    method: 'GET',
    pattern: '/api/status',
    handle: ({ port }) => ({ json: port.status() }),
  },
  {
    method: 'GET',
    pattern: '/api/history',
    handle: ({ port, query }) => ({ json: port.history(historyMinutesOf(query.get('minutes')) * 60_000) }),
  },
]
