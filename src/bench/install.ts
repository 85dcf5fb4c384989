// Makes sure smtp-sink (and Postfix itself) are on the machine: Debian's postfix package, installed with no
// system configuration so no system Postfix listens on port 25.
import { execFileSync } from 'node:child_process'
import { BenchError } from './errors'

function has(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

function aptInstallPostfix(): void {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  execFileSync('debconf-set-selections', { input: 'postfix postfix/main_mailer_type select No configuration\n', env })
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', 'postfix'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  } catch {
    // A fresh machine has no package lists yet.
    execFileSync('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
    execFileSync('apt-get', ['install', '-y', '-qq', 'postfix'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  }
}

/** Installs Debian's postfix package when smtp-sink is missing (root only); throws EBENCHTOOL when it cannot. */
export function ensureSmtpSink(install: boolean, log: (line: string) => void): void {
  if (has('smtp-sink') && has('postfix')) return
  const fix =
    'install it with: echo "postfix postfix/main_mailer_type select No configuration" | ' +
    'debconf-set-selections && apt-get install -y postfix'
  if (!install) throw new BenchError('EBENCHTOOL', `smtp-sink is missing and --no-install was given; ${fix}`)
  if (process.getuid?.() !== 0) throw new BenchError('EBENCHTOOL', `smtp-sink is missing and this is not root; ${fix}`)
  log('installing Debian package postfix (for smtp-sink), no system configuration ...')
  try {
    aptInstallPostfix()
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? (err as Error).message
    throw new BenchError('EBENCHTOOL', `apt-get install postfix failed: ${stderr.trim()}; ${fix}`, { cause: err })
  }
  if (!has('smtp-sink')) throw new BenchError('EBENCHTOOL', `postfix installed but smtp-sink is still missing; ${fix}`)
}
