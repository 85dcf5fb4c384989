// A client that keeps making mistakes is sent away: after `smtp.max_errors` error replies without delivering a
// message, the last one is followed by `421 4.7.0 Too many errors` and the connection closes (Postfix's
// smtpd_hard_error_limit). Past `smtp.max_junk_commands` NOOP/RSET/VRFY/… without a delivery, each further one counts
// as an error too (smtpd_junk_command_limit). Otherwise a client could hold a connection slot for hours with junk,
// or probe addresses and commands at leisure. Which replies count is countsAsError's, which commands are junk
// isJunkCommand's (src/inbound/limits.ts). Patches Haraka 3.3.4's Connection.prototype.respond, outermost, so the
// closing 421 is counted as a refusal too.
import constants from 'haraka-constants'
import { countsAsError, type InboundLimits, isJunkCommand } from '../inbound/limits'
import { partLogger } from '../log'

const log = partLogger('smtp')
const DISCONNECTING = constants.connection.state.DISCONNECTING

interface ErrorCountingConn {
  state: number
  remote: { ip: string }
  /** True while Haraka sends the reply to the end of DATA. */
  awaiting_data_reply?: boolean
  /** The command being answered (Haraka does not update it during DATA). */
  current_line: string | null
  respond(code: number, msg: unknown, func?: () => void): unknown
  disconnect(): void
  /** Error replies since the connection began or last delivered a message. */
  mxgateErrors?: number
  /** Junk commands since then. */
  mxgateJunk?: number
  /** The closing 421 is on its way. */
  mxgateErrorCut?: boolean
}

interface ConnectionClass {
  prototype: { respond(this: ErrorCountingConn, code: number, msg: unknown, func?: () => void): unknown }
}

/** The code Haraka will send: a DSN object passed as the message carries its own. */
function replyCode(code: number, msg: unknown): number {
  if (msg !== null && typeof msg === 'object' && 'code' in msg && 'reply' in msg) return Number(msg.code)
  return Number(code)
}

/** The limits are read at every reply, so a reload's new ones apply to connections already open. */
export function installErrorLimit(current: () => Pick<InboundLimits, 'maxErrors' | 'maxJunkCommands'>): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Connection = (require('Haraka/connection') as { Connection: ConnectionClass }).Connection
  const respond = Connection.prototype.respond
  Connection.prototype.respond = function (this: ErrorCountingConn, code, msg, func) {
    if (this.state >= DISCONNECTING || this.mxgateErrorCut === true) return respond.call(this, code, msg, func)
    if (this.awaiting_data_reply === true) {
      if (replyCode(code, msg) < 300) {
        this.mxgateErrors = 0
        this.mxgateJunk = 0
      }
      return respond.call(this, code, msg, func)
    }
    const { maxErrors, maxJunkCommands } = current()
    if (maxErrors <= 0) return respond.call(this, code, msg, func)
    let error = countsAsError(replyCode(code, msg))
    if (!error && maxJunkCommands > 0 && this.current_line !== null && isJunkCommand(this.current_line)) {
      this.mxgateJunk = (this.mxgateJunk ?? 0) + 1
      error = this.mxgateJunk > maxJunkCommands
    }
    if (!error) return respond.call(this, code, msg, func)
    const errors = (this.mxgateErrors ?? 0) + 1
    this.mxgateErrors = errors
    if (errors < maxErrors) return respond.call(this, code, msg, func)
    this.mxgateErrorCut = true
    log.info({ ip: this.remote.ip, errors, junk: this.mxgateJunk ?? 0 }, 'too many errors: connection closed')
    return respond.call(this, code, msg, () => {
      func?.()
      if (this.state >= DISCONNECTING) return
      // Past the cut flag: this reply goes straight through.
      this.respond(421, `4.7.0 Too many errors (${errors}) without a message delivered; closing connection`, () =>
        this.disconnect(),
      )
    })
  }
}
