// What a backend said or did at each SMTP stage. Pure data: the relay classifies it, health counts it.

export const STAGES = ['connect', 'banner', 'ehlo', 'starttls', 'mail', 'rcpt', 'data', 'dot', 'rset', 'quit'] as const
export type Stage = (typeof STAGES)[number]

export interface SmtpReply {
  code: number
  /** Enhanced status code (RFC 3463) from the first line, e.g. "4.3.0", or null when the backend sent none. */
  enhanced: string | null
  /** Reply text lines without the code prefix, e.g. ["2.1.0 Ok"] → ["Ok"] (enhanced code stripped too). */
  lines: string[]
}

/**
 * How a stage failed: an SMTP reply we did not want, something below SMTP, or one of two kinds where nothing was
 * sent and no one is at fault: 'unsupported', the client refused to send this envelope to this backend (e.g. a
 * non-ASCII address to a backend without SMTPUTF8); 'saturated', all of mxgate's own sessions to this backend
 * (backend_client.max_sessions) stayed busy for backend_client.session_wait.
 */
export type FailureKind = 'reply' | 'timeout' | 'reset' | 'refused' | 'tls' | 'protocol' | 'unsupported' | 'saturated'

export interface StageFailure {
  stage: Stage
  kind: FailureKind
  /** The reply when kind === 'reply' (and the last reply seen, if any, otherwise). */
  reply: SmtpReply | null
  /** One line for logs and for the sender's 4xx text, e.g. "connect ECONNREFUSED 127.0.0.1:2601". */
  message: string
  elapsedMs: number
}

export interface RecipientReply {
  rcpt: string
  reply: SmtpReply
}

/** The result of handing one message to one backend once. */
export interface DeliveryAttempt {
  backendId: string
  /** True when the backend answered 2xx at end of data for the accepted recipients. */
  ok: boolean
  /** Recipients the backend accepted at RCPT. */
  accepted: string[]
  /** Recipients the backend refused at RCPT (with its reply). */
  refused: RecipientReply[]
  /** The reply to the final dot, when the dialogue got that far. */
  dotReply: SmtpReply | null
  /** Why the attempt failed, when it failed at a stage other than RCPT (all refused at RCPT gives failure null). */
  failure: StageFailure | null
  elapsedMs: number
  /** True when the message went over a session that had already carried an earlier message. */
  reusedSession: boolean
}

export function replyText(reply: SmtpReply): string {
  const first = reply.lines[0] ?? ''
  return reply.enhanced ? `${reply.code} ${reply.enhanced} ${first}`.trimEnd() : `${reply.code} ${first}`.trimEnd()
}
