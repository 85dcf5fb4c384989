// mxgate itself as a relay in front of the sink, started the way an operator starts it: `node bin/mxgate.js start`.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { onCleanup, spawnChild } from './children'
import { BenchError } from './errors'
import { freePort, waitForBanner } from './net'

export interface MxgateRelay {
  port: number
  pid: number
  spoolDir: string
  stop(): Promise<void>
}

export interface MxgateParams {
  /** Where the backend "sink" is (a closed port for the spool rows). */
  backendPort: number
  /** MXGATE_WORKERS: 0 = one process; N = N workers. */
  workers: number
  domain: string
  /** mxgate.ini text layered over config/mxgate.ini (`start --config DIR`); none = stock settings. */
  ini?: string
}

/**
 * The spool rows' only changes: how long a refused backend stays ejected and when a spooled message is first retried.
 * Stock (30 s, 1 min) the drain would begin after the bench's cap; the drain itself (drain_rate, concurrency) and
 * everything else stay stock. The same idea as the demo's shorter timings.
 */
/** The "journal off" row: the same stock mxgate without the replay journal, to show what the journal costs. */
export const NO_JOURNAL_INI = [
  '; written by the bench for the journal-off row',
  '[journal]',
  'enabled = false',
  '',
].join('\n')

export const SPOOL_ROW_INI = [
  '; written by the bench for the spool rows; layered over config/mxgate.ini',
  '[breaker]',
  'ejection_time = 2s',
  'max_ejection_time = 4s',
  '[spool]',
  'retry_first = 2s',
  '',
].join('\n')

/** bin/mxgate.js of this checkout (dist/bench → repo root). */
export function mxgateBin(): string {
  return path.resolve(__dirname, '..', '..', 'bin', 'mxgate.js')
}

/** Starts mxgate with its own temp spool and free ports; EBENCHUNAVAILABLE while bin/mxgate.js does not exist. */
export async function startMxgate(p: MxgateParams): Promise<MxgateRelay> {
  const bin = mxgateBin()
  if (!existsSync(bin)) throw new BenchError('EBENCHUNAVAILABLE', `${bin} does not exist yet`)
  const port = await freePort()
  const adminPort = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), 'mxgate-bench-mxgate-'))
  const spoolDir = path.join(dir, 'spool')
  const env = {
    ...process.env,
    MXGATE_LISTEN: `127.0.0.1:${port}`,
    MXGATE_BACKENDS: `sink=127.0.0.1:${p.backendPort}`,
    MXGATE_DOMAINS: p.domain,
    MXGATE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    MXGATE_SPOOL_DIR: spoolDir,
    MXGATE_WORKERS: String(p.workers),
    // No load balancer to warn: stop at once.
    MXGATE_SHUTDOWN_GRACE: '0',
  }
  const args = [bin, 'start']
  if (p.ini !== undefined) {
    writeFileSync(path.join(dir, 'mxgate.ini'), p.ini)
    args.push('--config', dir)
  }
  const child = spawnChild(process.execPath, args, {
    env,
    cwd: path.resolve(__dirname, '..', '..'),
    logFile: path.join(dir, 'mxgate.log'),
  })
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    unregister()
    await child.stop(5_000)
    rmSync(dir, { recursive: true, force: true })
  }
  const unregister = onCleanup(stop)
  try {
    await waitForBanner(port, 'mxgate', 20_000, () => child.alive())
  } catch (err) {
    const log = child.output().split('\n').slice(-15).join('\n')
    await stop()
    throw new BenchError('EBENCHSTART', `${(err as Error).message}\nmxgate log:\n${log}`, { cause: err })
  }
  return { port, pid: child.pid, spoolDir, stop }
}

/**
 * Regular files under dir (the spool's messages; temp files are counted too until they are renamed), not those of
 * the replay journal, which lives under the spool dir by default and keeps what was delivered.
 */
export function countFiles(dir: string): number {
  let n = 0
  let entries: import('node:fs').Dirent[]
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return 0
  }
  for (const e of entries) {
    if (e.isDirectory()) n += e.name === 'journal' ? 0 : countFiles(path.join(dir, e.name))
    else if (e.isFile()) n++
  }
  return n
}
