// The Haraka side of what mxgate refuses from the internet before a message reaches the engine: connection counts,
// messages per connection, DATA time and rate, memory for messages in flight, and bad bytes in DATA. The decisions
// are in src/inbound/ (pure); this file counts on Haraka's connections and transactions and answers through them.
// It patches Haraka 3.3.4's Connection (accumulate_data, reset_transaction_respond): re-check when upgrading.
import constants from 'haraka-constants'
import type { MxgateConfig } from '../config/schema'
import { clientKey } from '../inbound/client-key'
import { type DataFault, dataLineFault } from '../inbound/data-policy'
import { ConnectionGate, dataOverdue, type InboundLimits, MemoryBudget } from '../inbound/limits'
import { partLogger } from '../log'

const log = partLogger('smtp')

interface GuardedTransaction {
  uuid: string
  data_bytes: number
  /** The first NUL or bare CR seen in DATA. */
  mxgateDataFault?: DataFault
  /** Bytes of this message reserved in the memory budget. */
  mxgateHeld?: number | undefined
  /** The budget was full: the rest of this message was not kept and it will be refused. */
  mxgateOverMemory?: boolean
  mxgateDataTimer?: NodeJS.Timeout
  /** DATA began and the transaction has not ended: a shutdown waits for it. */
  mxgateInData?: boolean
}

/** What the guard reads and writes on a Haraka connection. */
export interface GuardedConn {
  transaction: GuardedTransaction | null
  remote: { ip: string }
  current_data: Buffer | null
  tran_count: number
  /** Haraka's connection state (constants.connection.state). */
  state: number
  respond(code: number, msg: string, cb?: () => void): unknown
  disconnect(): void
  /** The address whose connection slot this connection holds. */
  mxgateSlot?: string | undefined
  /** Told to leave because the node is shutting down (421 sent, disconnect under way). */
  mxgateLeaving?: boolean
}

interface ConnectionPrototype {
  accumulate_data(this: GuardedConn, line: Buffer | string): unknown
  reset_transaction_respond(this: GuardedConn, ...args: unknown[]): unknown
}

export interface Refusal {
  code: number
  text: string
}

let limits: InboundLimits
let gate: ConnectionGate
let budget: MemoryBudget
let maxMessageBytes = 0
/** Every connection holding a slot: a shutdown sends the idle ones away. */
const open = new Set<GuardedConn>()
let draining = false
/** Messages whose final dot arrived (for mxgate_smtp_messages_received_total). */
let received = 0

const SHUTTING_DOWN = '4.3.2 Service shutting down; try again later'
let installed = false

/** The inbound limits of a configuration. */
function limitsOf(cfg: MxgateConfig): InboundLimits {
  const s = cfg.smtp
  return {
    maxConnections: s.maxConnections,
    maxConnectionsPerIp: s.maxConnectionsPerIp,
    maxMessagesPerConnection: s.maxMessagesPerConnection,
    maxErrors: s.maxErrors,
    maxJunkCommands: s.maxJunkCommands,
    dataTimeoutMs: s.dataTimeoutMs,
    minDataRate: s.minDataRate,
    dataRateGraceMs: s.dataRateGraceMs,
    maxMessageMemory: s.maxMessageMemory,
  }
}

/** A reload changed the inbound limits: connections and messages from now on meet the new ones. */
export function retuneInboundGuard(cfg: MxgateConfig): void {
  if (!installed) return
  Object.assign(limits, limitsOf(cfg))
  budget.limit = limits.maxMessageMemory
}

/** Reads the limits and patches Haraka's Connection once per process (each cluster worker has its own counts). */
export function installInboundGuard(cfg: MxgateConfig, harakaMaxBytes: number): void {
  limits = limitsOf(cfg)
  gate = new ConnectionGate(limits)
  budget = new MemoryBudget(limits.maxMessageMemory)
  maxMessageBytes = harakaMaxBytes
  installed = true
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const proto = (require('Haraka/connection') as { Connection: { prototype: ConnectionPrototype } }).Connection
    .prototype
  const accumulate = proto.accumulate_data
  proto.accumulate_data = function (this: GuardedConn, line: Buffer | string) {
    const txn = this.transaction
    if (txn === null) return accumulate.call(this, line)
    // Haraka passes its own Received line, a string, first: DATA has begun.
    if (typeof line === 'string') {
      startDataClock(this, txn)
      return accumulate.call(this, line)
    }
    if (txn.mxgateDataFault === undefined) {
      const fault = dataLineFault(line)
      if (fault !== null) txn.mxgateDataFault = fault
    }
    const end = line.length === 3 && line[0] === 0x2e && line[1] === 0x0d && line[2] === 0x0a
    if (end) received++
    // Haraka keeps no line past its size limit, so such lines cost no memory either.
    if (!end && txn.data_bytes + line.length <= maxMessageBytes) {
      if (txn.mxgateOverMemory === true || !budget.reserve(line.length)) {
        if (txn.mxgateOverMemory !== true) log.warn({ id: txn.uuid, held: budget.inUse }, 'message memory full')
        txn.mxgateOverMemory = true
        txn.data_bytes += line.length
        return undefined
      }
      txn.mxgateHeld = (txn.mxgateHeld ?? 0) + line.length
    }
    return accumulate.call(this, line)
  }
  // Every transaction ends here (after the reply, on RSET, on disconnect): what it held goes back.
  const resetRespond = proto.reset_transaction_respond
  proto.reset_transaction_respond = function (this: GuardedConn, ...args: unknown[]) {
    const txn = this.transaction
    if (txn !== null) {
      txn.mxgateInData = false
      if (txn.mxgateDataTimer !== undefined) clearInterval(txn.mxgateDataTimer)
      if (txn.mxgateHeld !== undefined) budget.release(txn.mxgateHeld)
      txn.mxgateHeld = undefined
    }
    return resetRespond.apply(this, args)
  }
}

/** Checks the DATA phase once a second: past the deadline or below the rate floor, the sender is cut off. */
function startDataClock(conn: GuardedConn, txn: GuardedTransaction): void {
  const startedAt = Date.now()
  txn.mxgateInData = true
  txn.mxgateDataTimer = setInterval(() => {
    const received = txn.data_bytes + (conn.current_data?.length ?? 0)
    const overdue = dataOverdue(startedAt, received, Date.now(), limits)
    if (overdue === null || conn.transaction !== txn) return
    clearInterval(txn.mxgateDataTimer)
    log.info({ id: txn.uuid, ip: conn.remote.ip, overdue, received }, 'DATA too slow: connection closed')
    const why =
      overdue === 'deadline'
        ? `DATA took longer than ${limits.dataTimeoutMs / 1000}s`
        : `DATA slower than ${limits.minDataRate} bytes/s`
    conn.respond(421, `4.4.2 ${why}; closing connection`, () => conn.disconnect())
  }, 1000)
  txn.mxgateDataTimer.unref()
}

/** The limits in force (a reload changes them in place). */
export function inboundLimits(): Readonly<InboundLimits> {
  return limits
}

/** A new connection: its slot, or why it gets none (421 and close). */
export function admitConnection(conn: GuardedConn): Refusal | null {
  // Per client: an IPv4 address, or an IPv6 /64 (a host there can use any of its addresses).
  const client = clientKey(conn.remote.ip)
  const full = gate.open(client)
  if (full === null) {
    conn.mxgateSlot = client
    open.add(conn)
    return null
  }
  log.info({ ip: conn.remote.ip, client, full, open: gate.counts }, 'connection refused: too many')
  return full === 'total'
    ? { code: 421, text: '4.7.0 Too many connections to this server; try again later' }
    : { code: 421, text: `4.7.0 Too many connections from ${client}; try again later` }
}

export function releaseConnection(conn: GuardedConn): void {
  open.delete(conn)
  if (conn.mxgateSlot === undefined) return
  gate.close(conn.mxgateSlot)
  conn.mxgateSlot = undefined
}

/** At MAIL: over the messages-per-connection limit, the sender reconnects. */
export function admitTransaction(conn: GuardedConn): Refusal | null {
  if (draining) return { code: 421, text: SHUTTING_DOWN }
  if (conn.tran_count <= limits.maxMessagesPerConnection) return null
  return {
    code: 421,
    text: `4.7.0 Too many messages in one connection (at most ${limits.maxMessagesPerConnection}); reconnect`,
  }
}

/** After the final dot: a message that did not fit in memory is refused for now, the rest go on. */
export function overMemory(conn: GuardedConn): Refusal | null {
  if (conn.transaction?.mxgateOverMemory !== true) return null
  return { code: 451, text: '4.3.1 Insufficient system resources for this message now; try again later' }
}

/** The first bad byte of DATA (see data-policy.ts), if any. */
export function dataFault(conn: GuardedConn): DataFault | undefined {
  return conn.transaction?.mxgateDataFault
}

/** Counts for metrics and tests. */
export function inboundCounts(): { connections: number; clients: number; messageMemory: number; received: number } {
  const c = gate.counts
  return { connections: c.total, clients: c.ips, messageMemory: budget.inUse, received }
}

/**
 * The listener has closed: no new transaction starts, and every connection waiting for a command (none of its
 * message in DATA or awaiting its reply) hears 421 and is closed, as RFC 5321 §3.8 allows. Called again and again
 * during a shutdown, it sends each connection away as soon as it is idle. Returns what is still open, and how many
 * of those hold a message between DATA and its reply.
 */
export function sendIdleConnectionsAway(): { connections: number; inData: number } {
  draining = true
  let inData = 0
  for (const conn of open) {
    if (conn.transaction?.mxgateInData === true) {
      inData++
      continue
    }
    if (conn.state !== constants.connection.state.CMD || conn.mxgateLeaving === true) continue
    conn.mxgateLeaving = true
    conn.respond(421, SHUTTING_DOWN, () => conn.disconnect())
  }
  return { connections: open.size, inData }
}
