// Who may change things (and read envelope addresses) through the admin API: bearer tokens from admin.token (one
// token, or `name:token,…`) or the generated token file, compared in constant time. Never without a token, not even
// from loopback: any local user or a browser page could otherwise eject backends or read who mails whom.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { Actor } from './types'

/** admin.token (or MXGATE_ADMIN_TOKEN) does not parse; the message names the entry, never the secret. */
export class TokenConfigError extends Error {
  readonly code = 'ETOKENCONFIG'
  constructor(message: string) {
    super(message)
    this.name = 'TokenConfigError'
  }
}

interface NamedDigest {
  name: string
  /** sha256 of the token: equal length for every token, so timingSafeEqual never sees different sizes. */
  digest: Buffer
}

export interface TokenSet {
  /** Token names in configuration order (never the tokens). Empty: no token configured. */
  readonly names: readonly string[]
  /** The name of the matching token, or null. Looks at every token, so timing does not say which one matched. */
  match(presented: string): string | null
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/
const DEFAULT_NAME = 'admin'

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

function tokenSetOf(entries: NamedDigest[]): TokenSet {
  return {
    names: entries.map((e) => e.name),
    match(presented: string): string | null {
      const digest = sha256(presented)
      let found: string | null = null
      for (const e of entries) {
        if (timingSafeEqual(digest, e.digest) && found === null) found = e.name
      }
      return found
    },
  }
}

/**
 * Parses admin.token: null/blank = no token; `secret` = one token named "admin"; `alice:s1,ci:s2` = named tokens.
 * An entry counts as named when the text before its first colon is a plain name (letters, digits, _ . @ -).
 */
export function parseTokens(text: string | null | undefined): TokenSet {
  const raw = (text ?? '').trim()
  if (raw === '') return tokenSetOf([])
  const parts = raw.split(',').map((p) => p.trim())
  const entries: NamedDigest[] = []
  parts.forEach((part, i) => {
    const where = parts.length > 1 ? `admin.token entry ${i + 1}` : 'admin.token'
    if (part === '') throw new TokenConfigError(`${where} is empty; write name:token entries separated by commas`)
    const colon = part.indexOf(':')
    const name = colon > 0 ? part.slice(0, colon) : ''
    let entry: { name: string; token: string }
    if (colon > 0 && NAME.test(name)) entry = { name, token: part.slice(colon + 1) }
    else if (parts.length === 1) entry = { name: DEFAULT_NAME, token: part }
    else throw new TokenConfigError(`${where} has no name; in a list every entry is name:token (e.g. alice:s3cret)`)
    if (entry.token === '') throw new TokenConfigError(`${where} ("${entry.name}") has an empty token`)
    if (entries.some((e) => e.name === entry.name)) {
      throw new TokenConfigError(`${where}: the name "${entry.name}" appears twice; give every token its own name`)
    }
    const digest = sha256(entry.token)
    const same = entries.find((e) => e.digest.equals(digest))
    if (same) {
      throw new TokenConfigError(
        `${where} ("${entry.name}") repeats the token of "${same.name}"; audit could not tell them apart`,
      )
    }
    entries.push({ name: entry.name, digest })
  })
  return tokenSetOf(entries)
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x.y.z). */
export function isLoopbackClient(address: string): boolean {
  const a = address.toLowerCase()
  return a === '::1' || /^(::ffff:)?127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a)
}

/** The client address as operators write it: IPv4-mapped IPv6 shown as plain IPv4. */
export function displayAddress(address: string | undefined): string {
  if (address === undefined) return 'unknown'
  return address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

export type ChangeAuth = { ok: true; actor: Actor } | { ok: false; status: 401 | 403; error: string; who: string }

/** Extracts the token from `Authorization: Bearer <token>`; undefined when absent or another scheme. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header)
  return m ? m[1] : undefined
}

/**
 * Decides whether a change (or a read that shows envelope addresses) may proceed, and as whom. `what` names the
 * request in the error, e.g. "this change" or "reading the spool".
 */
export function authorizeChange(
  tokens: TokenSet,
  authorization: string | undefined,
  remote: string | undefined,
  what = 'this change',
): ChangeAuth {
  const from = displayAddress(remote)
  if (tokens.names.length === 0) {
    return {
      ok: false,
      status: 403,
      who: `anonymous@${from}`,
      error: `this node has no admin token, so ${what} is refused; set admin.token (or MXGATE_ADMIN_TOKEN), or let mxgate start generate admin.token_file`,
    }
  }
  const presented = bearerToken(authorization)
  if (presented === undefined) {
    const sent =
      authorization === undefined ? 'no Authorization header' : 'an Authorization header that is not "Bearer <token>"'
    return {
      ok: false,
      status: 401,
      who: `anonymous@${from}`,
      error: `${what} needs a token and the request had ${sent}; send "Authorization: Bearer <token>" (mxgate --token T, --token-file F or MXGATE_ADMIN_TOKEN)`,
    }
  }
  const name = tokens.match(presented)
  if (name === null) {
    return {
      ok: false,
      status: 401,
      who: `anonymous@${from}`,
      error:
        "the token does not match any admin token of this node; check --token / --token-file / MXGATE_ADMIN_TOKEN against admin.token or the node's admin.token_file (for a name:token list, send only the part after the colon)",
    }
  }
  return { ok: true, actor: { by: name, from } }
}

/**
 * The canary webhook's own check: its bearer token is canary.webhook_token, never an admin token (a pipeline that
 * reports canaries must not be able to eject backends). `tokens` empty = the webhook is off.
 */
export function authorizeHook(
  tokens: TokenSet,
  authorization: string | undefined,
  remote: string | undefined,
): ChangeAuth {
  const who = `anonymous@${displayAddress(remote)}`
  if (tokens.names.length === 0)
    return {
      ok: false,
      status: 403,
      who,
      error:
        'this node has no canary webhook token, so canary returns over HTTP are refused; set canary.webhook_token (or MXGATE_CANARY_WEBHOOK_TOKEN)',
    }
  const presented = bearerToken(authorization)
  if (presented === undefined)
    return {
      ok: false,
      status: 401,
      who,
      error:
        'a canary return needs the canary webhook token: send "Authorization: Bearer <canary.webhook_token>" (the admin token does not work here)',
    }
  if (tokens.match(presented) === null)
    return {
      ok: false,
      status: 401,
      who,
      error: 'the token does not match canary.webhook_token of this node (the admin token does not work here)',
    }
  return { ok: true, actor: { by: 'canary-webhook', from: displayAddress(remote) } }
}
