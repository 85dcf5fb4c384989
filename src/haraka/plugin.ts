// The Haraka plugin: hooks only. Deciding is the engine's job; this file translates between Haraka and it.
import constants from 'haraka-constants'
import { findToken } from '../canary/message'
import { canaryReturnReply, judgeCanaryRecipient } from '../inbound/canary-return'
import { dataFaultReply } from '../inbound/data-policy'
import { renameForgedAuthResults } from '../inbound/forged-trace'
import { judgeRecipient } from '../inbound/recipient-policy'
import { partLogger } from '../log'
import type { InboundMessage } from '../message'
import { activeConfig, activeEngine, closeActiveEngine, markListening } from './active'
import type { HarakaAddress, HarakaConnection, HarakaPlugin, HarakaTransaction, Next } from './haraka-types'
import {
  admitConnection,
  admitTransaction,
  dataFault,
  type GuardedConn,
  overMemory,
  releaseConnection,
} from './inbound-guard'
import { verifyRecipient } from './rcpt-verify'
import { acceptReply } from './replies'
import { respondWithCode } from './respond'
import { advertiseStarttls, handleStarttls, starttlsDisconnected } from './starttls'

const log = partLogger('smtp')

export function register(this: HarakaPlugin): void {
  const cfg = activeConfig()
  // Haraka answers "450 plugin timeout" after this long; our own deadline must always fire first.
  this.timeout = Math.ceil(cfg.relay.deadlineMs / 1000) + 30
}

/** Haraka runs these once its SMTP listener is bound (in one process, or in each worker): readiness waits for it. */
export function hook_init_master(next: Next): void {
  markListening()
  next()
}

export function hook_init_child(next: Next): void {
  markListening()
  next()
}

/** Our name in the banner, EHLO reply and Received header (Haraka would use the OS hostname and "Haraka"). */
export function hook_connect_init(next: Next, connection: HarakaConnection): void {
  connection.local.host = activeConfig().smtp.hostname
  connection.local.info = 'mxgate'
  next()
}

/** Skip reverse DNS: it costs a lookup per connection and only decorates the Received header. */
export function hook_lookup_rdns(next: Next, connection: HarakaConnection): void {
  next(constants.ok, connection.remote.ip)
}

const EARLY_TALKER =
  '5.5.1 Protocol error: talking before the greeting, or a pipelined command without PIPELINING; closing'

const EARLY_CONTENT = '5.5.1 Protocol error: message content sent before the 354 reply to DATA (RFC 2920 3.1); closing'

/** Refuses and disconnects a client that talked out of turn; false when it did not. */
function refuseEarlyTalker(next: Next, connection: HarakaConnection, why: string | null, text = EARLY_TALKER): boolean {
  if (why === null) return false
  log.info({ ip: connection.remote.ip, why }, 'early talker refused')
  respondWithCode(connection, 554)
  next(constants.denydisconnect, text)
  return true
}

/** Haraka's own flag: the client sent something before the greeting (or while a command's hooks ran). */
const flagged = (c: HarakaConnection): string | null => (c.early_talker === true ? 'before the greeting' : null)

/**
 * A command already waiting behind HELO/EHLO was sent before the client could know PIPELINING is offered
 * (RFC 2920 §3.1: EHLO ends a group). Haraka slices the current command off `current_data` before its hooks run.
 */
function afterHello(c: HarakaConnection): string | null {
  if (flagged(c) !== null) return flagged(c)
  const rest = c.current_data
  return rest != null && rest.indexOf(10) !== -1 ? 'a command pipelined behind HELO/EHLO' : null
}

/**
 * Bytes already waiting behind DATA were sent before the 354 (RFC 2920 §3.1: DATA ends a group). Haraka would read
 * them with the command line limit and wrap every line past 512 bytes, so the backend would get an altered message;
 * Postfix 3.9 (`smtpd_forbid_unauth_pipelining`) disconnects such a client too.
 */
function afterData(c: HarakaConnection): string | null {
  if (flagged(c) !== null) return flagged(c)
  const rest = c.current_data
  return rest != null && rest.length > 0 ? 'message content before the 354 reply to DATA' : null
}

/** With a greet pause, the greeting waits and a client that talks meanwhile is refused (Postfix postscreen's test). */
export function hook_connect(next: Next, connection: HarakaConnection): void {
  const full = admitConnection(connection as unknown as GuardedConn)
  if (full !== null) {
    respondWithCode(connection, full.code)
    next(constants.denysoftdisconnect, full.text)
    return
  }
  const pause = activeConfig().smtp.greetPauseMs
  if (pause <= 0) {
    next()
    return
  }
  setTimeout(() => {
    if (!refuseEarlyTalker(next, connection, flagged(connection))) next()
  }, pause)
}

export function hook_helo(next: Next, connection: HarakaConnection): void {
  if (!refuseEarlyTalker(next, connection, afterHello(connection))) next()
}

export function hook_ehlo(next: Next, connection: HarakaConnection): void {
  if (!refuseEarlyTalker(next, connection, afterHello(connection))) next()
}

export function hook_data(next: Next, connection: HarakaConnection): void {
  if (!refuseEarlyTalker(next, connection, afterData(connection), EARLY_CONTENT)) next()
}

export function hook_mail(next: Next, connection: HarakaConnection): void {
  if (refuseEarlyTalker(next, connection, flagged(connection))) return
  const tooMany = admitTransaction(connection as unknown as GuardedConn)
  if (tooMany !== null) {
    respondWithCode(connection, tooMany.code)
    next(constants.denysoftdisconnect, tooMany.text)
    return
  }
  next()
}

export function hook_disconnect(next: Next, connection: HarakaConnection): void {
  releaseConnection(connection as unknown as GuardedConn)
  starttlsDisconnected(connection)
  next()
}

/** EHLO reply: STARTTLS when a certificate is configured (see starttls.ts). */
export function hook_capabilities(next: Next, connection: HarakaConnection): void {
  advertiseStarttls(connection)
  next()
}

/** Haraka has no STARTTLS command of its own: it reaches plugins as an unrecognized command. */
export function hook_unrecognized_command(next: Next, connection: HarakaConnection, params: unknown[]): void {
  const [verb, arg] = params as [string, string | undefined]
  if (!handleStarttls(next, connection, verb, arg ?? '', log)) next()
}

export function hook_rcpt(next: Next, connection: HarakaConnection, params: unknown[]): void {
  const rcpt = params[0] as HarakaAddress
  const cfg = activeConfig()
  const txn = connection.transaction as (HarakaTransaction & CanaryTransaction) | null
  // Haraka has already added this recipient to rcpt_to when the hook runs.
  const earlier = (txn?.rcpt_to ?? []).slice(0, -1).map((r) => r.address)
  const canary = judgeCanaryRecipient(rcpt.address, earlier, cfg.canary.returnAddress)
  if (canary?.kind === 'return' && txn) {
    txn.mxgateCanaryReturn = true
    next(constants.ok, '2.1.5 Canary return address ok')
    return
  }
  if (canary?.kind === 'refuse') {
    respondWithCode(connection, canary.refusal.code)
    next(constants.denysoft, `${canary.refusal.enhanced} ${canary.refusal.text}`)
    return
  }
  const refusal = judgeRecipient(
    { user: rcpt.user ?? '', host: rcpt.host ?? '', original: rcpt.original ?? rcpt.address },
    connection.transaction?.rcpt_to.length ?? 1,
    { domains: cfg.smtp.domains, maxRecipients: cfg.smtp.maxRecipients },
  )
  if (refusal === null) {
    const engine = activeEngine()
    if (engine.recipients === null) next(constants.ok)
    else verifyRecipient(next, connection, rcpt, engine.recipients, engine.verifyMetrics, cfg.smtp.domains)
    return
  }
  if (refusal.enhanced === '5.7.1') activeEngine().metrics.rcptDenied()
  // Haraka answers DENY with 550 and DENYSOFT with 450; the refusal's own code (452 for too many) is the one to send.
  respondWithCode(connection, refusal.code)
  next(refusal.code < 500 ? constants.denysoft : constants.deny, `${refusal.enhanced} ${refusal.text}`)
}

/** After the final dot: a NUL or bare CR in DATA refuses the message; so, for now, does a full memory budget. */
export function hook_data_post(next: Next, connection: HarakaConnection): void {
  const guarded = connection as unknown as GuardedConn
  const fault = dataFault(guarded)
  if (fault !== undefined) {
    const reply = dataFaultReply(fault)
    log.warn(
      { id: connection.transaction?.uuid, ip: connection.remote.ip, fault },
      'message refused: bad bytes in DATA',
    )
    respondWithCode(connection, reply.code)
    next(constants.deny, `${reply.enhanced} ${reply.text}`)
    return
  }
  const full = overMemory(guarded)
  if (full !== null) {
    respondWithCode(connection, full.code)
    next(constants.denysoft, full.text)
    return
  }
  next()
}

/** What tuning.ts records on Haraka's transaction. */
interface RecordedTransaction {
  /** Every line the sender sent, in order (set by tuning.ts; absent when Haraka runs without it). */
  mxgateLines?: Buffer[] | undefined
}

/**
 * The message exactly as the sender sent it, in wire form, in one copy: the Received line Haraka added at DATA, then
 * every DATA line (see tuning.ts). Not get_data(): that re-emits the header section from Haraka's parsed header
 * strings, which decode the raw bytes as UTF-8 and so alter 8-bit header bytes, and it reads the message stream,
 * which holds a blank line and the body lines a second time when no blank line ended the header section (and, with
 * tuning.ts, holds nothing: the recorded lines are the only copy). Null only when nothing was recorded (Haraka
 * running without tuning.ts): then get_data does it.
 */
export function storedMessage(txn: RecordedTransaction, authservIds: readonly string[]): Buffer | null {
  const lines = txn.mxgateLines
  if (lines === undefined) return null
  // The lines reference the socket's read buffers: let them go now rather than when Haraka drops the transaction.
  txn.mxgateLines = undefined
  // lines[0] is the Received line Haraka added; the sender's header section starts after it.
  const forged = renameForgedAuthResults(lines, authservIds, 1)
  if (forged > 0) log.info({ id: (txn as { uuid?: string }).uuid, forged }, 'renamed forged Authentication-Results')
  return Buffer.concat(lines)
}

/** Set at RCPT on a transaction to the canary return address: consumed here, never relayed or spooled. */
interface CanaryTransaction {
  mxgateCanaryReturn?: boolean
}

/** A returned canary: its token marks it back; the message itself goes nowhere. */
function consumeCanaryReturn(next: Next, connection: HarakaConnection, body: Buffer): void {
  const cfg = activeConfig()
  const token = findToken(body)
  const scheduler = activeEngine().canaries
  const outcome = token === null ? null : (scheduler?.returned(token) ?? { kind: 'off' as const })
  const reply = canaryReturnReply(token, outcome, cfg.canary.returnAddress ?? '')
  const fields = {
    id: connection.transaction?.uuid,
    ip: connection.remote.ip,
    token,
    outcome: outcome?.kind ?? 'no token',
  }
  // One per backend and interval when all is well: not worth an info line each.
  if (outcome?.kind === 'returned') log.debug(fields, 'canary return')
  else log.info(fields, `canary return refused or not pending: ${reply.code} ${reply.text}`)
  if (reply.code < 300) next(constants.ok, reply.text)
  else {
    respondWithCode(connection, reply.code)
    next(constants.deny, reply.text)
  }
}

export function hook_queue(next: Next, connection: HarakaConnection): void {
  const txn = connection.transaction
  if (!txn) {
    next()
    return
  }
  if ((txn as CanaryTransaction).mxgateCanaryReturn === true) {
    const stored = storedMessage(txn as RecordedTransaction, [])
    if (stored !== null) consumeCanaryReturn(next, connection, stored)
    else txn.message_stream.get_data({ dot_stuffed: false }, (b) => consumeCanaryReturn(next, connection, b))
    return
  }
  const started = Date.now()
  const relay = (body: Buffer): void => {
    const from = txn.mail_from.isNull() ? '' : txn.mail_from.address
    const msg: InboundMessage = {
      id: txn.uuid,
      envelope: { from, to: txn.rcpt_to.map((r) => r.address) },
      body,
      receivedAt: started,
    }
    activeEngine()
      .accept(msg)
      .then((accepted) => {
        const reply = acceptReply(accepted)
        const result = accepted.relay
        const fields = {
          id: txn.uuid,
          from,
          rcpts: msg.envelope.to.length,
          size: body.length,
          outcome: accepted.outcome === 'relayed' ? result.outcome : accepted.outcome,
          ...(accepted.outcome === 'spooled' ? { spoolId: accepted.spoolId } : {}),
          ...(accepted.outcome === 'spool-failed' ? { spoolError: accepted.error.message } : {}),
          backends: result.deliveries.map((d) => d.backendId),
          attempts: result.attempts,
          reply: `${reply.code} ${reply.text}`,
          ms: Date.now() - started,
          ...(result.outcome === 'deferred' ? { reason: result.reason, pending: result.pending.length } : {}),
          ...(result.refused.length > 0 ? { refused: result.refused.map((r) => r.rcpt) } : {}),
        }
        if (accepted.outcome === 'spooled') log.info(fields, 'spooled')
        else if (accepted.outcome === 'spool-failed') log.warn(fields, 'spool refused the message')
        else if (result.outcome === 'delivered') log.info(fields, 'relayed')
        else log.warn(fields, result.outcome === 'rejected' ? 'rejected by backend' : 'deferred')
        if (reply.code < 300) next(constants.ok, reply.text)
        else {
          // The backend's own refusal passed on, or mxgate's 451 when neither a backend nor the spool took it.
          respondWithCode(connection, reply.code, accepted.outcome === 'spool-failed' ? 'spool' : 'backend')
          next(reply.code < 500 ? constants.denysoft : constants.deny, reply.text)
        }
      })
      .catch((err: unknown) => {
        log.error({ id: txn.uuid, err }, 'relay failed unexpectedly')
        respondWithCode(connection, 451, 'internal')
        next(constants.denysoft, '4.3.0 Internal error; try again later')
      })
  }
  const stored = storedMessage(txn as RecordedTransaction, activeConfig().smtp.authservIds)
  if (stored !== null) relay(stored)
  // dot_stuffed: false keeps the stored wire form (dot-stuffed, CRLF): forwarded as-is, no re-encoding.
  else txn.message_stream.get_data({ dot_stuffed: false }, relay)
}

export function shutdown(): void {
  closeActiveEngine().catch((err: unknown) => log.error({ err }, 'engine close failed'))
}
