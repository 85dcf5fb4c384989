// One pino logger for the process; parts take a child with their own `part` binding. `mxgate start` configures it
// from the config ([log] level, redact_addresses) before any part takes its child; other commands and tests get the
// MXGATE_LOG_LEVEL default.
import pino from 'pino'
import { redactFields, redactText } from './log-redact'

export type Logger = pino.Logger

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export type LogLevel = (typeof LOG_LEVELS)[number]

export interface LogSettings {
  level: LogLevel
  /** Replace the local part of every envelope address in log lines with "***". */
  redactAddresses: boolean
}

let root: Logger | undefined

function makeRoot(s: LogSettings): Logger {
  return pino({
    level: s.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(s.redactAddresses
      ? {
          formatters: { log: (obj: Record<string, unknown>) => redactFields(obj) },
          hooks: {
            logMethod(this: Logger, args: Parameters<pino.LogFn>, method: pino.LogFn) {
              const clean = args.map((a: unknown) => (typeof a === 'string' ? redactText(a) : a))
              return method.apply(this, clean as Parameters<pino.LogFn>)
            },
          },
        }
      : {}),
  })
}

export function rootLogger(): Logger {
  root ??= makeRoot({ level: (process.env.MXGATE_LOG_LEVEL as LogLevel | undefined) ?? 'info', redactAddresses: false })
  return root
}

/** Sets the process logger from the config; call it before any part takes its logger (they keep the first). */
export function configureLogging(s: LogSettings): void {
  root = makeRoot(s)
}

/** Replace the process logger (tests pass a sink here). */
export function setRootLogger(logger: Logger): void {
  root = logger
}

export function partLogger(part: string): Logger {
  return rootLogger().child({ part })
}
