// A node's graceful stop, in the order a load balancer needs: not ready at once, still serving for the grace period
// (so the balancer notices and sends new connections elsewhere), then the listener closes, idle connections are sent
// away, messages in DATA and deliveries in flight finish, and the process exits within a bound. Knows no Haraka:
// launch.ts fills in the ports.
import type { Logger } from '../log'

export interface DrainPorts {
  /** /readyz answers 503 from now on. */
  markNotReady(): void
  /** Closes the SMTP listener: no new connections. */
  stopListening(): void
  /** Sends idle connections away (421); says what is still open and how many hold a message in DATA. */
  sendIdleAway(): { connections: number; inData: number }
  /** Messages between the end of DATA and their reply (being relayed or spooled). */
  inFlight(): number
  /** Closes the admin listener and the engine (spool, state store, backend sessions). */
  close(): Promise<void>
}

export interface DrainTiming {
  graceMs: number
  timeoutMs: number
}

/** Beyond grace + timeout, what closing the engine (the spool's last saves, Redis) may take before a hard exit. */
export const CLOSE_MARGIN_MS = 10_000

/** How long a node may take to stop (supervisors must wait longer: systemd TimeoutStopSec, Kubernetes' grace). */
export function stopBoundMs(smtp: { shutdownGraceMs: number; shutdownTimeoutMs: number }): number {
  return smtp.shutdownGraceMs + smtp.shutdownTimeoutMs + CLOSE_MARGIN_MS
}

export interface DrainResult {
  /** False when the timeout cut off connections or messages still in progress. */
  complete: boolean
  connections: number
  inData: number
  inFlight: number
}

/** Between two looks at what is still open. */
const POLL_MS = 50

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Runs the whole stop; resolves when the node is closed (never rejects: a failed close is logged). */
export async function drainNode(ports: DrainPorts, timing: DrainTiming, log: Logger): Promise<DrainResult> {
  ports.markNotReady()
  log.info(
    { graceMs: timing.graceMs },
    'shutting down: /readyz fails now; the SMTP listener stays open for the grace period',
  )
  if (timing.graceMs > 0) await sleep(timing.graceMs)
  ports.stopListening()
  const until = Date.now() + timing.timeoutMs
  let left = ports.sendIdleAway()
  log.info(
    { connections: left.connections, inData: left.inData, inFlight: ports.inFlight(), timeoutMs: timing.timeoutMs },
    'SMTP listener closed; waiting for messages in DATA and in flight',
  )
  while ((left.connections > 0 || ports.inFlight() > 0) && Date.now() < until) {
    await sleep(POLL_MS)
    left = ports.sendIdleAway()
  }
  const result = { ...left, inFlight: ports.inFlight(), complete: left.connections === 0 && ports.inFlight() === 0 }
  if (!result.complete) {
    log.warn(result, 'shutdown timeout: closing with messages unfinished (their senders have no 250 and will retry)')
  }
  try {
    await ports.close()
  } catch (err) {
    log.error({ err }, 'closing the engine failed')
  }
  return result
}
