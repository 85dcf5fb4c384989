// A private Postfix instance as a relay in front of the sink: own config, queue and data dirs under a temp dir,
// stock settings (fsync on), listening on a free loopback port, relayhost = the sink. Removed entirely on stop.
import { execFile } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { onCleanup } from './children'
import { BenchError } from './errors'
import { freePort, waitForBanner } from './net'

const run = promisify(execFile)

export interface PostfixRelay {
  port: number
  /** Postfix's master process: the root of the tree whose CPU and memory are measured. */
  masterPid: number
  dir: string
  version: string
  stop(): Promise<void>
}

/** Postfix's version from `postconf -d mail_version`, or undefined when Postfix is not installed. */
export async function postfixVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await run('postconf', ['-d', '-h', 'mail_version'])
    return stdout.trim()
  } catch {
    return undefined
  }
}

/**
 * Debian's master.cf with the public smtp service moved to 127.0.0.1:port and chroot off (a chroot under a temp dir
 * would need /etc files copied in; it does not change the work per message).
 */
export function privateMasterCf(stock: string, port: number): string {
  return stock
    .split('\n')
    .map((line) => {
      if (!/^[a-z0-9]/i.test(line)) return line
      const f = line.trim().split(/\s+/)
      if (f.length < 8) return line
      if (f[0] === 'smtp' && f[1] === 'inet') f[0] = `127.0.0.1:${port}`
      f[4] = 'n'
      return f.join(' ')
    })
    .join('\n')
}

/** main.cf of the private instance: only paths, addresses and logging differ from Postfix's defaults. */
export function privateMainCf(dir: string, sinkPort: number): string {
  return [
    'compatibility_level = 3.6',
    `queue_directory = ${dir}/queue`,
    `data_directory = ${dir}/data`,
    'meta_directory = /etc/postfix',
    `maillog_file = ${dir}/maillog`,
    `maillog_file_prefixes = ${dir}`,
    'myhostname = relay.bench.localdomain',
    // Empty: bench.example is relayed, never delivered locally.
    'mydestination =',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'mynetworks = 127.0.0.0/8',
    `relayhost = [127.0.0.1]:${sinkPort}`,
    'alias_maps =',
    'alias_database =',
    '',
  ].join('\n')
}

function maillog(dir: string): string {
  try {
    return readFileSync(path.join(dir, 'maillog'), 'utf8').split('\n').slice(-15).join('\n')
  } catch {
    return '(no maillog)'
  }
}

/** Starts the private instance and waits for its smtpd banner. Registered for cleanup. */
export async function startPostfixRelay(sinkPort: number): Promise<PostfixRelay> {
  const version = await postfixVersion()
  if (version === undefined) throw new BenchError('EBENCHTOOL', 'postfix is not installed (Debian package postfix)')
  const port = await freePort()
  const dir = mkdtempSync(path.join(tmpdir(), 'mxgate-bench-postfix-'))
  // Postfix's own users must be able to walk into the instance, and it checks ownership of every queue dir.
  chmodSync(dir, 0o755)
  const etc = path.join(dir, 'etc')
  mkdirSync(etc)
  mkdirSync(path.join(dir, 'queue'))
  mkdirSync(path.join(dir, 'data'))
  const ids = await run('id', ['-u', 'postfix']).catch(() => undefined)
  if (ids !== undefined) chownSync(path.join(dir, 'data'), Number(ids.stdout.trim()), 0)
  writeFileSync(path.join(etc, 'main.cf'), privateMainCf(dir, sinkPort))
  writeFileSync(path.join(etc, 'master.cf'), privateMasterCf(readFileSync('/etc/postfix/master.cf', 'utf8'), port))

  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    unregister()
    await run('postfix', ['-c', etc, 'stop']).catch(() => undefined)
    // `postfix stop` returns before master is gone; the queue must not be removed under a live master.
    const pid = masterPidOf(dir)
    for (let i = 0; i < 50 && pid !== undefined && alive(pid); i++) await new Promise((r) => setTimeout(r, 100))
    if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  const unregister = onCleanup(stop)

  try {
    await run('postfix', ['-c', etc, 'start'])
  } catch (err) {
    await stop().catch(() => undefined)
    throw new BenchError(
      'EBENCHSTART',
      `postfix -c ${etc} start failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}\n${maillog(dir)}`,
      { cause: err },
    )
  }
  try {
    await waitForBanner(port, 'Postfix relay', 10_000)
  } catch (err) {
    const log = maillog(dir)
    await stop()
    throw new BenchError('EBENCHSTART', `${(err as Error).message}\nmaillog:\n${log}`, { cause: err })
  }
  const masterPid = masterPidOf(dir)
  if (masterPid === undefined) {
    await stop()
    throw new BenchError('EBENCHSTART', `Postfix answered but left no ${dir}/queue/pid/master.pid`)
  }
  return { port, masterPid, dir, version, stop }
}

function masterPidOf(dir: string): number | undefined {
  const file = path.join(dir, 'queue', 'pid', 'master.pid')
  if (!existsSync(file)) return undefined
  const pid = Number(readFileSync(file, 'utf8').trim())
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
