// Haraka's own log lines into mxgate's pino stream: one JSON format, one level. Haraka formats each line as JSON
// (its logger's JSON format) and hands it to logger.log, which is replaced here: the line becomes a pino record of
// the `haraka` part, with Haraka's fields (origin, uuid) and its message as msg. It patches Haraka 3.3.4's logger:
// re-check when upgrading.
import Module from 'node:module'
import path from 'node:path'
import { format } from 'node:util'
import type { Logger, LogLevel } from '../log'

/**
 * Haraka's level names → pino's. Its NOTICE and INFO lines are per-connection detail (connect, disconnect, what each
 * plugin did): mxgate's own line per message says what matters, so they are debug, and at info Haraka does not even
 * format them (two lines per connection were a tenth of a busy node's CPU in the benchmark).
 */
const TO_PINO: Record<string, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  DATA: 'trace',
  PROTOCOL: 'trace',
  DEBUG: 'debug',
  INFO: 'debug',
  NOTICE: 'debug',
  WARN: 'warn',
  ERROR: 'error',
  CRIT: 'fatal',
  ALERT: 'fatal',
  EMERG: 'fatal',
}

/** The most verbose Haraka level worth formatting at each pino level (DATA, message content, is never logged). */
const HARAKA_LEVEL: Record<LogLevel, number> = {
  trace: 8,
  debug: 6,
  info: 4,
  warn: 4,
  error: 3,
  fatal: 2,
  silent: -1,
}

interface HarakaLogger {
  loglevel: number
  /** Lines Haraka held back until its plugins were loaded. */
  deferred_logs: Array<{ level: string; data: string }>
  format: string
  formats: { JSON: string }
  log(level: string, data: string, obj?: unknown): boolean
}

const PINO_KEYS = new Set(['msg', 'time', 'pid', 'level', 'part', 'hostname', 'err'])

/** Turns one Haraka line (JSON, or plain text from a caller that bypasses the formatter) into fields and a message. */
export function harakaRecord(data: string): { fields: Record<string, unknown>; msg: string } {
  if (data.startsWith('{')) {
    try {
      const { level: _level, message, ...raw } = JSON.parse(data) as Record<string, unknown>
      // A hook's own `msg` (and anything else named like pino's fields) would be a second key of the same name.
      const fields: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(raw)) fields[PINO_KEYS.has(k) ? `haraka_${k}` : k] = v
      return { fields, msg: typeof message === 'string' ? message : '' }
    } catch {
      // not JSON after all: plain text below
    }
  }
  return { fields: {}, msg: data }
}

/**
 * haraka-email-message looks for Haraka's logger beside itself, does not find it in an npm install, and falls back
 * to console.log (a plain-text line at load). Its logger module is put in the require cache first, writing to pino.
 */
function preloadEmailMessageLogger(log: Logger): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const file = path.join(path.dirname(require.resolve('haraka-email-message')), 'lib', 'logger.js')
  if (require.cache[file] !== undefined) return
  const m = new Module(file)
  m.filename = file
  m.loaded = true
  const line = (level: 'debug' | 'info' | 'warn' | 'error') => (msg: unknown) => log[level](String(msg))
  m.exports = {
    logdebug: line('debug'),
    loginfo: line('debug'),
    lognotice: line('info'),
    logwarn: line('warn'),
    logerror: line('error'),
  }
  require.cache[file] = m
}

/**
 * Some of Haraka's packages write to the console themselves (haraka-tld: "loaded TLD files…"). In a process that
 * runs Haraka, console output becomes pino records of the `console` part, so stdout stays one JSON stream.
 */
function routeConsole(log: Logger): void {
  const to =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (...args: unknown[]) =>
      log[level](format(...args))
  console.log = to('info')
  console.info = to('info')
  console.debug = to('debug')
  console.warn = to('warn')
  console.error = to('error')
}

/** Call before anything loads Haraka's modules (tuning.ts does), so no line escapes to stdout as plain text. */
export function routeHarakaLog(level: LogLevel, log: Logger, consoleLog: Logger): void {
  routeConsole(consoleLog)
  preloadEmailMessageLogger(log)
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const logger = require('Haraka/logger') as HarakaLogger
  logger.format = logger.formats.JSON
  logger.loglevel = HARAKA_LEVEL[level]
  logger.log = (harakaLevel, data) => {
    const { fields, msg } = harakaRecord(data)
    log[TO_PINO[harakaLevel.replace(/^LOG/, '')] ?? 'info'](fields, msg)
    return true
  }
  for (const item of logger.deferred_logs.splice(0)) logger.log(item.level, item.data)
}
