// Haraka answers every DENY with 550 and every DENYSOFT with 450, whatever mxgate chose. This sets the code of the
// next reply on a connection instead.
import type { RefusalReason } from '../inbound/refusal-reason'
import type { HarakaConnection } from './haraka-types'
import type { TaggedConnection } from './refusal-count'

/**
 * The next reply on this connection gets `code` (a backend's 554, our 451, 421 for a cut-off); `reason` tells the
 * refusal counter why, when the reply text alone would not (replies after DATA).
 */
export function respondWithCode(connection: HarakaConnection, code: number, reason?: RefusalReason): void {
  if (reason !== undefined) (connection as TaggedConnection).mxgateRefusal = reason
  const original = connection.respond
  connection.respond = function (this: HarakaConnection, _code, msg, cb) {
    connection.respond = original
    return original.call(this, code, msg, cb)
  }
}
