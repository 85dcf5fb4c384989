// The `mxgate` command: subcommands dispatch here. Ops commands talk to a node's admin API, never to internals.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseTokens, TokenConfigError } from '../admin/auth'
import { TokenFileError } from '../admin/token-file'
import { parseRedisUrl, RedisUrlError } from '../cluster'
import { ConfigError, loadConfig } from '../config/load'
import { redactConfig } from '../config/redact'
import type { MxgateConfig } from '../config/schema'
import { configureLogging } from '../log'
import { runFakeBackendCommand } from './fake-backend-cmd'
import { OPS_USAGE, runOpsCommand } from './ops'

const ROOT = path.resolve(__dirname, '..', '..')

const USAGE = () => `usage: mxgate <command> [options]

commands:
  start [--config DIR]     run the relay (settings: config/mxgate.ini, DIR/mxgate.ini, MXGATE_* env)
  check-config [--config DIR]  validate the settings and print them as JSON (secrets masked as ***)
  demo                     the incident: four fake backends (one quietly failing, one going down), mxgate, 8000 messages, a summary
  fake-backend --port N    a test SMTP backend with fault modes (see --help)
  reload [--json]          re-read the configuration on a running node (as SIGHUP does); see the README's "Reload"
  version, --version       print mxgate's version
  help                     this text

${OPS_USAGE}`

/** The version in package.json (the one file that states it). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version?: unknown }
  return typeof pkg.version === 'string' ? pkg.version : 'unknown'
}

function configDirArg(argv: string[]): string | undefined {
  const i = argv.indexOf('--config')
  if (i === -1) return undefined
  const dir = argv[i + 1]
  if (dir === undefined || dir.startsWith('--')) throw new UsageError('--config needs a directory')
  return path.resolve(dir)
}

class UsageError extends Error {
  readonly code = 'EUSAGE'
}

/** Loads the settings and checks the values other parts parse (Redis URL, admin tokens) before anything starts. */
function loadChecked(argv: string[]): MxgateConfig {
  const cfg = loadConfig({ baseDir: path.join(ROOT, 'config'), overrideDir: configDirArg(argv) })
  if (cfg.redis.url !== null) parseRedisUrl(cfg.redis.url)
  parseTokens(cfg.admin.token)
  return cfg
}

/** Runs a subcommand; resolves an exit code, or null when the command keeps running (start). */
export async function main(argv: string[]): Promise<number | null> {
  const [cmd, ...rest] = argv
  try {
    switch (cmd) {
      case 'start': {
        const cfg = loadChecked(rest)
        // Before Haraka and the parts take their loggers: they keep the one they get.
        configureLogging(cfg.log)
        // Loaded on demand: the ops commands should not pay for Haraka, the engine or the demo.
        const { startRelay } = require('../haraka/launch') as typeof import('../haraka/launch')
        // A reload (SIGHUP, POST /api/reload) re-reads the same files and checks them the same way.
        await startRelay(ROOT, cfg, () => loadChecked(rest))
        return null
      }
      case 'check-config': {
        const cfg = loadChecked(rest)
        process.stdout.write(`${JSON.stringify(redactConfig(cfg), null, 2)}\n`)
        return 0
      }
      case 'demo': {
        const { runDemo } = require('../demo/demo') as typeof import('../demo/demo')
        return await runDemo(rest)
      }
      case 'status':
      case 'eject':
      case 'drain':
      case 'restore':
      case 'spool':
      case 'replay':
      case 'journal':
      case 'reload':
        return await runOpsCommand(cmd, rest)
      case 'fake-backend':
        return await runFakeBackendCommand(rest)
      case 'version':
      case '--version':
      case '-V':
        process.stdout.write(`mxgate ${packageVersion()}\n`)
        return 0
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE())
        return cmd === undefined ? 2 : 0
      default:
        process.stderr.write(`mxgate: unknown command "${cmd}"\n\n${USAGE()}`)
        return 2
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`mxgate: configuration error: ${err.message}\n`)
      return 2
    }
    if (err instanceof RedisUrlError) {
      process.stderr.write(`mxgate: configuration error: redis.url: ${err.message}\n`)
      return 2
    }
    if (err instanceof TokenConfigError) {
      process.stderr.write(`mxgate: configuration error: admin.token: ${err.message}\n`)
      return 2
    }
    if (err instanceof TokenFileError) {
      process.stderr.write(`mxgate: admin.token_file: ${err.message}\n`)
      return 2
    }
    if (err instanceof UsageError) {
      process.stderr.write(`mxgate: ${err.message}\n\n${USAGE()}`)
      return 2
    }
    throw err
  }
}
