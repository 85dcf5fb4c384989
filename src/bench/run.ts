// `npm run bench`: every row of the comparison in one run, one table on stdout, the same as JSON in bench/results/.
import { mkdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { type BenchOptions, parseBenchArgs, type RowId, sizeLabel } from './args'
import { cleanupAll, killGroupsSync } from './children'
import { harakaVersion } from './haraka'
import { ensureSmtpSink } from './install'
import { postfixVersion } from './postfix'
import { formatTable, type RowReport } from './report'
import { directRows, finishRows, harakaRows, mxgateRows, postfixRows, type RowContext, spoolRows } from './rows'
import { startSink } from './sink'

export interface MachineInfo {
  cpuModel: string
  cores: number
  memoryMB: number
  kernel: string
  node: string
  postfix: string
  haraka: string
  loadAverageAtStart: number[]
  loadAverageAtEnd?: number[]
}

async function machineInfo(): Promise<MachineInfo> {
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryMB: Math.round(os.totalmem() / 1024 / 1024),
    kernel: os.release(),
    node: process.version,
    postfix: (await postfixVersion()) ?? 'not installed',
    haraka: harakaVersion(),
    loadAverageAtStart: os.loadavg(),
  }
}

/** JSON.stringify with NaN as null (JSON has no NaN) and latencies left out (they are summarised). */
function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)
}

function writeResults(opts: BenchOptions, machine: MachineInfo, rows: RowReport[], startedAt: Date): string {
  const dir = path.isAbsolute(opts.outDir) ? opts.outDir : path.resolve(__dirname, '..', '..', opts.outDir)
  mkdirSync(dir, { recursive: true })
  const file = path.join(
    dir,
    `${startedAt
      .toISOString()
      .replace(/:/g, '-')
      .replace(/\.\d+Z$/, 'Z')}.json`,
  )
  const options = { ...opts, sizes: opts.sizes.map(sizeLabel) }
  writeFileSync(file, `${toJson({ startedAt: startedAt.toISOString(), machine, options, rows })}\n`)
  return file
}

async function measureAll(opts: BenchOptions, log: (line: string) => void): Promise<RowReport[]> {
  const sink = await startSink()
  const ctx: RowContext = { opts, sink, log }
  const cores = os.availableParallelism()
  const plan: Record<RowId, () => Promise<RowReport[]>> = {
    direct: () => directRows(ctx),
    postfix: () => postfixRows(ctx),
    haraka: () => harakaRows(ctx),
    mxgate: () => mxgateRows(ctx, 0),
    'mxgate-cold': () => mxgateRows(ctx, 0, 'cold'),
    'mxgate-noverify': () => mxgateRows(ctx, 0, 'noverify'),
    'mxgate-nojournal': () => mxgateRows(ctx, 0, 'nojournal'),
    'mxgate-workers': () => mxgateRows(ctx, cores),
    spool: () => spoolRows(ctx),
  }
  const rows: RowReport[] = []
  try {
    for (const id of opts.rows) rows.push(...(await plan[id]()))
  } finally {
    await sink.stop()
  }
  return finishRows(rows, opts.sizes)
}

async function main(): Promise<void> {
  const opts = parseBenchArgs(process.argv.slice(2))
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`)
  }
  ensureSmtpSink(opts.install, log)
  const startedAt = new Date()
  const machine = await machineInfo()
  log(
    `bench: ${machine.cores} × ${machine.cpuModel}, node ${machine.node}, Postfix ${machine.postfix}, ` +
      `Haraka ${machine.haraka}; ${opts.reps} rep(s) of ≤${opts.count} msgs / ${opts.timeLimitMs / 1000} s, ` +
      `${opts.concurrency} sessions, sizes ${opts.sizes.map(sizeLabel).join(', ')}`,
  )
  const load = machine.loadAverageAtStart[0] ?? 0
  if (load > machine.cores) {
    log(`bench: warning: load average ${load.toFixed(1)} on ${machine.cores} cores; other work shares the CPUs`)
  }
  const rows = await measureAll(opts, log)
  machine.loadAverageAtEnd = os.loadavg()
  process.stdout.write(`${formatTable(rows)}\n`)
  const file = writeResults(opts, machine, rows, startedAt)
  log(`bench: results in ${path.relative(process.cwd(), file) || file}`)
}

if (require.main === module) {
  let stopping = false
  const stopOn = (signal: NodeJS.Signals): void => {
    process.on(signal, () => {
      if (stopping) return
      stopping = true
      process.stderr.write(`bench: ${signal}, stopping every process it started\n`)
      void cleanupAll().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143))
    })
  }
  stopOn('SIGINT')
  stopOn('SIGTERM')
  process.on('exit', killGroupsSync)
  void main()
    .catch((err: unknown) => {
      process.stderr.write(`bench: ${(err as Error).message}\n`)
      process.exitCode = 1
    })
    .finally(() => cleanupAll())
}
