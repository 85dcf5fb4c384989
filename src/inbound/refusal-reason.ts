// Why a sender was refused, as a bounded metric label: from the reply mxgate or Haraka sent (code and text), for
// refusals decided before a message reaches the engine. Replies to a finished message (a backend's refusal, the
// spool's 451) are labelled by the plugin, which knows where they came from. Pure: no Haraka.

export const REFUSAL_REASONS = [
  'size',
  'syntax',
  'line_too_long',
  'relay_denied',
  'too_many_recipients',
  'unknown_recipient',
  'unverified',
  'harvest',
  'bare_lf',
  'bad_bytes',
  'loop',
  'mime_parts',
  'early_talker',
  'connection_limit',
  'message_limit',
  'error_limit',
  'slow_data',
  'idle_timeout',
  'memory',
  'tls',
  'proxy',
  'shutting_down',
  'backend',
  'spool',
  'internal',
  'other',
] as const
export type RefusalReason = (typeof REFUSAL_REASONS)[number]

/** First match wins: more specific texts before the generic code ranges. */
const BY_TEXT: ReadonlyArray<[RegExp, RefusalReason]> = [
  [/^5\.3\.4 |^Message too big/, 'size'],
  [/^Bare line-feed|^5\.6\.0 Message refused: it contains a bare LF/, 'bare_lf'],
  [/^5\.6\.0 Message refused: it contains/, 'bad_bytes'],
  [/^Too many received headers/, 'loop'],
  [/too many MIME parts/, 'mime_parts'],
  [/^5\.7\.1 /, 'relay_denied'],
  [/^4\.5\.3 /, 'too_many_recipients'],
  [/^5\.5\.1 Protocol error/, 'early_talker'],
  [/^4\.7\.0 Too many connections/, 'connection_limit'],
  [/^4\.7\.0 Too many messages/, 'message_limit'],
  [/^4\.7\.0 Too many errors/, 'error_limit'],
  [/^4\.4\.2 Idle|^timeout$/, 'idle_timeout'],
  [/^4\.4\.2 DATA/, 'slow_data'],
  [/^4\.3\.1 /, 'memory'],
  [/^4\.3\.2 Service shutting down/, 'shutting_down'],
  [/PROXY/, 'proxy'],
  [/TLS|SSL/, 'tls'],
  [/^Command line too long/, 'line_too_long'],
]

/** The reason for a refusal reply (code >= 400); null for a reply that refuses nothing. */
export function refusalReason(code: number, text: string): RefusalReason | null {
  if (code < 400) return null
  for (const [re, reason] of BY_TEXT) if (re.test(text)) return reason
  // Unknown commands, bad arguments, bad sequence, bad parameters (RFC 5321 4.2.4, RFC 1869).
  if ([500, 501, 502, 503, 504, 555].includes(code)) return 'syntax'
  return 'other'
}
