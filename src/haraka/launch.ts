// Starts Haraka in this process with mxgate's plugin, listener and worker count taken from the mxgate config.
// Haraka is required only here, after HARAKA points at the project, because its modules read config at load.
import cluster from 'node:cluster'
import os from 'node:os'
import path from 'node:path'
import { parseTokens } from '../admin/auth'
import { startAdminServer } from '../admin/server'
import { ensureTokenFile } from '../admin/token-file'
import { NotReadyError } from '../admin/types'
import { startIpcHub } from '../cluster/ipc-hub'
import { adminTokenFile } from '../config/load'
import type { MxgateConfig } from '../config/schema'
import { formatHostPort } from '../config/units'
import { partLogger } from '../log'
import { NodeAdmin } from '../node-admin'
import { activeEngine, closeActiveEngine, existingEngine, setActiveConfig, whenListening } from './active'
import { installErrorLimit } from './error-limit'
import { routeHarakaLog } from './haraka-log'
import { inboundCounts, inboundLimits, installInboundGuard, sendIdleConnectionsAway } from './inbound-guard'
import { installProxyProtocol } from './proxy'
import { countRefusals } from './refusal-count'
import { type ConfigSource, Reloader } from './reload'
import { CLOSE_MARGIN_MS, drainNode, stopBoundMs } from './shutdown'
import { installStarttls } from './starttls'
import { tuneHaraka } from './tuning'

interface HarakaServer {
  createServer(params: Record<string, unknown>): void
  stopListeners(): void
}

/** The IPC message a worker sends the master so the other workers reload too (tagged like the state messages). */
const RELOAD_OTHERS = 'reload-others'

export async function startRelay(root: string, cfg: MxgateConfig, source: ConfigSource): Promise<void> {
  const log = partLogger('main')
  const tokens = adminTokens(cfg, log)
  let admin: NodeAdmin | null = null
  let adminServer: { close(): Promise<void> } | null = null
  setActiveConfig(cfg)
  process.env.HARAKA = root
  routeHarakaLog(cfg.log.level, partLogger('haraka'), partLogger('console'))
  moveHarakaQueue()
  tuneHaraka(cfg)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const connectionIni = require('haraka-config').get('connection.ini') as { max?: { bytes?: string | number } }
  installInboundGuard(cfg, Number(connectionIni.max?.bytes ?? 0) || Number.MAX_SAFE_INTEGER)
  installStarttls(cfg, partLogger('tls'))
  installProxyProtocol(cfg, root, partLogger('smtp'))
  countRefusals((reason) => existingEngine()?.metrics.smtpRejected(reason))
  installErrorLimit(inboundLimits)
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception; exiting')
    process.exit(1)
  })
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const server = require('Haraka/server') as HarakaServer
  const isMaster = cfg.smtp.workers > 0 && cluster.isPrimary
  const timing = { graceMs: cfg.smtp.shutdownGraceMs, timeoutMs: cfg.smtp.shutdownTimeoutMs }
  const boundMs = stopBoundMs(cfg.smtp)

  let stopping = false
  const stop = (signal: string) => {
    if (stopping) {
      // A terminal's Ctrl-C reaches every worker as well as the master, which then sends SIGTERM too: only a second
      // SIGINT to the master (or the single process) means "now".
      if (signal === 'SIGINT' && !cluster.isWorker) {
        log.warn({ signal }, 'second SIGINT: exiting without waiting')
        process.exit(1)
      }
      return
    }
    stopping = true
    // Whatever hangs, the process is gone within the bound.
    setTimeout(
      () => {
        log.error({ boundMs }, 'shutdown did not finish within its bound; exiting')
        process.exit(1)
      },
      boundMs + (isMaster ? CLOSE_MARGIN_MS : 0),
    ).unref()
    if (isMaster) {
      log.info({ signal }, 'shutting down: the workers drain')
      stopWorkers(boundMs)
        .then((clean) => process.exit(clean ? 0 : 1))
        .catch((err: unknown) => {
          log.error({ err }, 'stopping workers failed')
          process.exit(1)
        })
      return
    }
    log.info({ signal }, 'shutdown requested')
    drainNode(
      {
        markNotReady: () => {
          if (admin) admin.shuttingDown = true
        },
        stopListening: () => server.stopListeners(),
        sendIdleAway: sendIdleConnectionsAway,
        inFlight: () => existingEngine()?.inFlight ?? 0,
        close: async () => {
          await adminServer?.close()
          await closeActiveEngine()
        },
      },
      timing,
      log,
    )
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      })
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // SIGHUP re-reads the settings. The master has no engine: it passes the signal to every worker, and relays a
  // worker's API reload to the others, so each worker process applies it (each logs its own result).
  let reloader: Reloader | null = null
  let hupWhileStarting = false
  if (isMaster) {
    process.on('SIGHUP', () => signalWorkers(null))
    cluster.on('message', (worker, m: unknown) => {
      if ((m as { mxgate?: unknown } | null)?.mxgate === RELOAD_OTHERS) signalWorkers(worker.id)
    })
  } else {
    process.on('SIGHUP', () => {
      // Before the engine is up (a worker still starting) the reload waits for it: it may have read the old file.
      if (reloader === null) hupWhileStarting = true
      else reloader.reload('SIGHUP').catch(() => undefined) // refused: logged by the reloader, nothing changed
    })
  }

  if (!isMaster) {
    log.info(
      {
        listen: formatHostPort(cfg.smtp.listen),
        backends: cfg.backends.map((b) => `${b.id}=${b.host}:${b.port}`),
        domains: cfg.smtp.domains,
        files: cfg.files,
        worker: cluster.isWorker ? cluster.worker?.id : undefined,
      },
      'mxgate starting',
    )
  }
  // Workers without Redis keep the node's backend state in the master, which relays changes between them.
  if (isMaster && cfg.redis.url === null) startIpcHub(partLogger('cluster'))
  if (!isMaster) {
    const engine = activeEngine()
    // The reloader exists once the engine is up; an API reload before then is told to come back (503).
    admin = new NodeAdmin(engine, async (by) => {
      if (reloader === null) {
        throw new NotReadyError(
          'the node is still starting (spool recovery): reload when /readyz says ready (a SIGHUP now is applied once it is up)',
        )
      }
      const view = await reloader.reload(by)
      if (cluster.isWorker) {
        process.send?.({ mxgate: RELOAD_OTHERS })
        view.notes.push('the other worker processes reload too; each logs "configuration reloaded" with its result')
      }
      return view
    })
    const ready = admin
    whenListening(() => {
      ready.smtpListening = true
    })
    // The admin API comes first, so probes get answers while the spool is recovered: /healthz 200 (a liveness probe
    // must not kill a node that is recovering), /readyz 503 "recovering". With workers, every worker serves the
    // admin port through the cluster's shared handle.
    adminServer = await startAdminServer({
      listen: cfg.admin.listen,
      tokens,
      canaryTokens: parseTokens(cfg.canary.webhookToken === null ? null : `canary:${cfg.canary.webhookToken}`),
      port: admin,
      log: partLogger('admin'),
    })
    // The state store and the spool (recovering what a crash left) are ready before the listener takes mail.
    await engine.start()
    engine.metrics.watchInbound(inboundCounts)
    const rl = new Reloader(engine, source, partLogger('reload'), !!process.env.MXGATE_BACKENDS)
    reloader = rl
    if (hupWhileStarting) rl.reload('SIGHUP').catch(() => undefined)
  }
  if (stopping) return
  server.createServer({
    listen: formatHostPort(cfg.smtp.listen),
    nodes: cfg.smtp.workers,
    // Haraka closes a connection idle this long (seconds).
    inactivity_timeout: cfg.smtp.idleTimeoutMs / 1000,
  })
}

/**
 * admin.token when set; otherwise the token in admin.token_file, generated at first start (the master does it before
 * forking, so workers read the same one). Logs where the token is, never the token.
 */
function adminTokens(cfg: MxgateConfig, log: ReturnType<typeof partLogger>) {
  if (cfg.admin.token !== null) return parseTokens(cfg.admin.token)
  const file = adminTokenFile(cfg)
  const { token, created } = ensureTokenFile(file)
  if (!cluster.isWorker) {
    log.info(
      { tokenFile: file, created },
      created
        ? 'admin token generated; the mxgate command reads it from this file (--token-file, MXGATE_ADMIN_TOKEN_FILE)'
        : 'admin token read from its file; the mxgate command reads it from there too',
    )
  }
  return parseTokens(token)
}

/**
 * Haraka creates and scans its outbound queue directory, `$HARAKA/queue`, at start, and exits when it cannot create
 * it. mxgate never queues outbound mail through Haraka, and its install directory is read-only where it is deployed
 * (systemd ProtectSystem=strict, a read-only container root): point that directory at the temp dir instead (private
 * per service under systemd's PrivateTmp, an emptyDir in Kubernetes). Nothing is ever written into it.
 */
function moveHarakaQueue(): void {
  // Through outbound's index, which loads its queue module the way Haraka does (the two require each other).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('Haraka/outbound')
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const queue = require('Haraka/outbound/queue') as { queue_dir: string }
  queue.queue_dir = path.join(os.tmpdir(), `mxgate-haraka-queue-${process.getuid?.() ?? 'user'}`)
}

/** SIGHUP to every worker but `except` (the one that already reloaded through the API). */
function signalWorkers(except: number | null): void {
  for (const w of Object.values(cluster.workers ?? {})) {
    if (w !== undefined && w.id !== except) w.process.kill('SIGHUP')
  }
}

/** SIGTERM to every worker (each drains as above); SIGKILL past the bound. True when all exited 0. */
async function stopWorkers(boundMs: number): Promise<boolean> {
  const workers = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined)
  const codes = await Promise.all(
    workers.map(
      (w) =>
        new Promise<number | null>((resolve) => {
          const t = setTimeout(() => {
            w.kill('SIGKILL')
            resolve(null)
          }, boundMs)
          w.once('exit', (code: number | null) => {
            clearTimeout(t)
            resolve(code)
          })
          w.process.kill('SIGTERM')
        }),
    ),
  )
  return codes.every((c) => c === 0)
}
