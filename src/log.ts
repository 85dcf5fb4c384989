// One pino logger for the process; parts take a child with their own `part` binding.
import pino from 'pino'

export type Logger = pino.Logger

let root: Logger | undefined

export function rootLogger(): Logger {
  root ??= pino({
    level: process.env.MXGATE_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  })
  return root
}

/** Replace the process logger (tests pass a sink here). */
export function setRootLogger(logger: Logger): void {
  root = logger
}

export function partLogger(part: string): Logger {
  return rootLogger().child({ part })
}
