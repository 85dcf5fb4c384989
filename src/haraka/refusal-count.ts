// Counts every refusal a sender hears, whoever decided it (Haraka's own checks or mxgate's), at the one place all
// replies pass: Connection.prototype.respond. Installed after tuning.ts, so it sees Haraka's own reply texts.
import { type RefusalReason, refusalReason } from '../inbound/refusal-reason'

/** Set on a connection by the plugin when it knows the reason better than the text says (replies after DATA). */
export interface TaggedConnection {
  mxgateRefusal?: RefusalReason | undefined
}

interface ConnectionClass {
  prototype: {
    respond(this: TaggedConnection, code: number, msg: unknown, func?: () => void): unknown
  }
}

function firstLine(msg: unknown): string {
  const first = Array.isArray(msg) ? msg[0] : msg
  return typeof first === 'string' ? first : String(first ?? '')
}

export function countRefusals(count: (reason: RefusalReason) => void): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Connection = (require('Haraka/connection') as { Connection: ConnectionClass }).Connection
  const respond = Connection.prototype.respond
  Connection.prototype.respond = function (this: TaggedConnection, code, msg, func) {
    if (code >= 400) {
      const tagged = this.mxgateRefusal
      this.mxgateRefusal = undefined
      const reason = tagged ?? refusalReason(code, firstLine(msg))
      if (reason !== null) count(reason)
    }
    return respond.call(this, code, msg, func)
  }
}
