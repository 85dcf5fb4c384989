// Haraka 3.3.4 with queue/smtp_forward as a relay in front of the sink: one process (nodes=0), its own temp
// instance dir, stock settings otherwise. Removed entirely on stop.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { onCleanup, spawnChild } from './children'
import { BenchError } from './errors'
import { freePort, waitForBanner } from './net'

export interface HarakaRelay {
  port: number
  pid: number
  version: string
  stop(): Promise<void>
}

/** The config files of the instance, by name under config/. */
export function harakaConfig(port: number, sinkPort: number, domain: string): Record<string, string> {
  return {
    'smtp.ini': `listen=127.0.0.1:${port}\nnodes=0\n`,
    plugins: 'rcpt_to.in_host_list\nqueue/smtp_forward\n',
    host_list: `${domain}\n`,
    'smtp_forward.ini': `host=127.0.0.1\nport=${sinkPort}\n`,
    // The level mxgate runs its embedded Haraka at (config/log.ini), so the two rows differ only in the forwarder.
    'log.ini': '[main]\nlevel=warn\n',
  }
}

function harakaDir(): string {
  return path.dirname(require.resolve('Haraka/package.json'))
}

export function harakaVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(harakaDir(), 'package.json'), 'utf8')) as { version: string }).version
  } catch {
    return 'unknown'
  }
}

/** Starts Haraka from node_modules and waits for its banner. Registered for cleanup. */
export async function startHarakaRelay(sinkPort: number, domain: string): Promise<HarakaRelay> {
  let bin: string
  try {
    bin = path.join(harakaDir(), 'bin', 'haraka')
  } catch (err) {
    throw new BenchError('EBENCHTOOL', 'Haraka is not installed in node_modules (npm dependency Haraka)', {
      cause: err,
    })
  }
  const port = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), 'mxgate-bench-haraka-'))
  // Haraka reads some files (connection.ini) only from the instance: start from its shipped defaults, like haraka -i.
  cpSync(path.join(harakaDir(), 'config'), path.join(dir, 'config'), { recursive: true })
  for (const [name, text] of Object.entries(harakaConfig(port, sinkPort, domain))) {
    writeFileSync(path.join(dir, 'config', name), text)
  }
  const child = spawnChild(process.execPath, [bin, '-c', dir], { logFile: path.join(dir, 'haraka.log') })
  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    unregister()
    await child.stop(3_000)
    rmSync(dir, { recursive: true, force: true })
  }
  const unregister = onCleanup(stop)
  try {
    await waitForBanner(port, 'Haraka', 20_000, () => child.alive())
  } catch (err) {
    const log = child.output().split('\n').slice(-15).join('\n')
    await stop()
    throw new BenchError('EBENCHSTART', `${(err as Error).message}\nHaraka log:\n${log}`, { cause: err })
  }
  return { port, pid: child.pid, version: harakaVersion(), stop }
}
