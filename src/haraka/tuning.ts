// Per-message costs Haraka pays for features mxgate does not use, removed once per process at start-up. These
// patch Haraka 3.3.4 internals (transaction.js, connection.js, haraka-message-stream 2.0.8, haraka-results,
// haraka-net-utils, haraka-config), so package.json pins those versions: re-check every patch when upgrading.
// bench/README.md has what each one bought.
import type { MxgateConfig } from '../config/schema'
import { dataFaultReply } from '../inbound/data-policy'

interface MessageStreamClass {
  prototype: { destroy(this: { spooling: boolean }): void }
}

interface RecordingTransaction {
  /** Every line the sender sent, in order (read and released by storedMessage in plugin.ts). */
  mxgateLines?: Buffer[] | undefined
  /** What Haraka decodes a string line with (it passes the Received line as a string). */
  encoding: BufferEncoding
  /** Haraka's own switch: true keeps every line out of its message stream. */
  discard_data: boolean
}

interface TransactionClass {
  prototype: { add_data(this: RecordingTransaction, line: Buffer | string): unknown }
}

interface CorkableSocket {
  cork(): void
  uncork(): void
}

interface ConnectionInternals {
  client?: { targetsocket?: Partial<CorkableSocket> }
  current_data: Buffer | null
  awaiting_data_reply?: boolean
  /** The socket this connection corked to hold a reply (see tuneHaraka). */
  mxgateCorked?: CorkableSocket | null
}

interface ConnectionClass {
  prototype: {
    respond(this: ConnectionInternals, code: number, msg: unknown, func?: () => void): unknown
  }
}

/**
 * Haraka refuses a too-large `MAIL … SIZE=` and a message that outgrew `max.bytes` during DATA with
 * `550 Message too big!`; RFC 1870 §6.1 and RFC 3463 say `552 5.3.4`, which senders treat as "too big", not as a
 * refusal of the recipient.
 */
const HARAKA_TOO_BIG = 'Message too big!'
export const TOO_BIG = '5.3.4 Message size exceeds fixed maximum message size'

/**
 * Haraka refuses a bare LF in DATA with `451 Bare line-feed` and closes: a 4xx the sender retries for days with the
 * same bytes. Like a bare CR or a NUL (data-policy.ts) it is a fault of the message: refused for good.
 */
const HARAKA_BARE_LF = 'Bare line-feed'
const BARE_LF = dataFaultReply('bare LF')

/** haraka-utils' indexOfLF, natively: the first LF's index, or -1 when there is none before `maxlength` (when set). */
export function indexOfLF(buf: Buffer, maxlength?: number): number {
  const at = buf.indexOf(0x0a)
  return at !== -1 && maxlength && at >= maxlength ? -1 : at
}

/** Haraka says just `421 timeout` when a connection was idle for `smtp.idle_timeout`. */
export const IDLE_TIMEOUT = '4.4.2 Idle for too long; closing connection'

/** The options haraka-results reads results.ini with (the memo in tuneHaraka keeps the first answer). */
const RESULTS_INI_OPTIONS = { booleans: ['+main.redis_publish'] }

interface ResultStoreClass {
  prototype: {
    _log(this: ResultStoreInternals, plugin: unknown, result: Record<string, unknown>, obj: ResultFields): unknown
  }
}

interface ResultStoreInternals {
  resolve_plugin_name(plugin: unknown): string
}

interface ResultFields {
  human?: unknown
  emit?: unknown
  err?: unknown
}

interface HarakaConfig {
  get(...args: unknown[]): unknown
}

interface HarakaNetUtils {
  get_primary_host_name(): string
}

/**
 * Per-message costs Haraka pays for features mxgate does not use, removed once per process (each cluster worker
 * runs this too). Behaviour on the wire stays the same; bench/README.md ("What each lever bought") has the numbers.
 */
export function tuneHaraka(cfg: MxgateConfig): void {
  // haraka-message-stream unlinks its spool file on every transaction reset, even when it never wrote one (an
  // unlink syscall through the thread pool per message). connection.ini sets spool_after=-1, so a message never
  // goes to a file (mxgate holds it in memory for the relay anyway); only a stream that did spool has a file.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const MessageStream = require('haraka-message-stream') as MessageStreamClass
  const destroy = MessageStream.prototype.destroy
  MessageStream.prototype.destroy = function (this: { spooling: boolean }) {
    if (this.spooling) destroy.call(this)
  }
  // Keep a reference to every line the sender sent, in wire form (dot-stuffed, CRLF) as Haraka's connection hands
  // it to the transaction: first the Received line Haraka adds at DATA, then each DATA line. hook_queue assembles
  // the message from them with one Buffer.concat instead of get_data's stream pipeline, which pushes every line
  // through a PassThrough, a line splitter and a collector (see storedMessage in plugin.ts). The lines are taken at
  // Transaction.add_data, which sees each line once, and not at the message stream's add_line: when no blank line
  // ends the header section (a body right after the header, a header-only message, a first line that is no
  // header), Transaction.end_data adds a blank line to the stream and then, a second time, every line from the first
  // one that does not look like a header on, so the stream holds more than the sender sent.
  // The recorded lines are the message's one copy in memory: `discard_data` keeps Haraka's message stream empty
  // (it would hold a second copy, in 64 KB chunks, for nobody: mxgate never reads it). Haraka still parses the
  // header section from the lines, for its own checks.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Transaction = (require('Haraka/transaction') as { Transaction: TransactionClass }).Transaction
  const addData = Transaction.prototype.add_data
  Transaction.prototype.add_data = function (this: RecordingTransaction, line: Buffer | string) {
    const buf = typeof line === 'string' ? Buffer.from(line, this.encoding) : line
    if (this.mxgateLines) this.mxgateLines.push(buf)
    else {
      this.mxgateLines = [buf]
      this.discard_data = true
    }
    return addData.call(this, buf)
  }

  // Haraka splits what a client sends into lines with haraka-utils' indexOfLF, a byte-by-byte JavaScript loop, once
  // per line (about 1,300 times for a 100 KB message): most of Connection._process_data's time. Buffer#indexOf finds
  // the same LF natively. Same answer: the first LF's index, or -1 when there is none before `maxlength` (when set).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const harakaUtils = require('haraka-utils') as { indexOfLF(buf: Buffer, maxlength?: number): number }
  harakaUtils.indexOfLF = indexOfLF

  // Haraka's respond() calls os.hostname() for every reply it sends (a uname syscall, ~2% of a busy node's CPU), to
  // prefix deny replies with it when connection.ini's uuid.deny_chars > 0 (mxgate's is 0). The machine's name is
  // read once; nothing in mxgate needs it to change while the process runs.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeOs = require('node:os') as { hostname(): string }
  const machineName = nodeOs.hostname()
  nodeOs.hostname = () => machineName

  // Every new connection asked haraka-config for the `me` file (absent: an existsSync per call, since a missing
  // file is never cached). mxgate's name is its configured hostname (hook_connect_init sets it for the banner and
  // Received header). Which hosts may send a PROXY header is proxy.ts's business.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const netUtils = require('haraka-net-utils') as HarakaNetUtils
  const hostname = cfg.smtp.hostname
  netUtils.get_primary_host_name = () => hostname

  // haraka-results builds a ResultStore per connection and per transaction, and each one asks haraka-config for
  // results.ini: a path resolve, a cache key from JSON.stringify and a deep clone every time. The file is ours and
  // static (config/results.ini), and ResultStore only reads it, so the first answer serves every store.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const harakaConfig = require('haraka-config') as HarakaConfig
  const get = harakaConfig.get
  let results: unknown
  harakaConfig.get = function (this: HarakaConfig, ...args: unknown[]) {
    if (args[0] !== 'results.ini') return get.apply(this, args)
    results ??= get.apply(this, args)
    return results
  }
  // Every results.add() (several per connection and message) also rebuilt a human-readable summary of the
  // plugin's results, for a log line or for plugins that read `.human`. Haraka's core reads neither, and mxgate's
  // plugin does not, so it is built only when it is logged: emit, err, a caller's own text, or a results.ini debug.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const ResultStore = require('haraka-results') as ResultStoreClass
  const resultLog = ResultStore.prototype._log
  ResultStore.prototype._log = function (this: ResultStoreInternals, plugin, result, obj) {
    if (obj.emit || obj.err || obj.human) return resultLog.call(this, plugin, result, obj)
    const settings = harakaConfig.get('results.ini', RESULTS_INI_OPTIONS) as Record<
      string,
      { debug?: unknown } | undefined
    >
    if (settings[this.resolve_plugin_name(plugin)]?.debug) return resultLog.call(this, plugin, result, obj)
    result.human = undefined
    result.human_html = undefined
    return undefined
  }

  // A pipelining sender's MAIL, RCPT and DATA arrive in one segment, and Haraka answered each with its own
  // write (a segment and a wakeup of the sender each). When another complete command is already buffered, the
  // reply is held in the corked socket and leaves with the next one: the group's replies go out in one write.
  // Never held: 354 (the sender may wait for it before sending the message) and the reply after end of DATA.
  // The next buffered command always gets a reply, so a held one waits only for that.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Connection = (require('Haraka/connection') as { Connection: ConnectionClass }).Connection
  const respond = Connection.prototype.respond
  Connection.prototype.respond = function (this: ConnectionInternals, code, msg, func) {
    if (msg === HARAKA_TOO_BIG) {
      code = 552
      msg = TOO_BIG
    } else if (Number(code) === 451 && typeof msg === 'string' && msg.startsWith(HARAKA_BARE_LF)) {
      code = BARE_LF.code
      msg = `${BARE_LF.enhanced} ${BARE_LF.text}`
    } else if (code === 421 && msg === 'timeout') {
      msg = IDLE_TIMEOUT
    }
    const sock = this.client?.targetsocket
    const more =
      code !== 354 &&
      this.awaiting_data_reply !== true &&
      this.current_data !== null &&
      this.current_data.indexOf(10) >= 0 &&
      typeof sock?.cork === 'function'
    if (more && !this.mxgateCorked) {
      const corkable = sock as CorkableSocket
      corkable.cork()
      this.mxgateCorked = corkable
    }
    const out = respond.call(this, code, msg, func)
    const corked = this.mxgateCorked
    if (!more && corked) {
      this.mxgateCorked = null
      corked.uncork()
    }
    return out
  }
}
