// Shared test helpers for the spool tests: a temp spool dir per test, a log sink, child processes.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { Writable } from 'node:stream'
import pino from 'pino'
import type { Test } from 'tap'
import ts from 'typescript'
import type { InboundMessage } from '../src/message'
import { type SpoolOptions, SpoolStore } from '../src/spool/store'

export interface LogLine {
  level: number
  msg: string
  [k: string]: unknown
}

/** A pino logger whose JSON lines land in `lines`, so tests can assert on what was logged. */
export function sinkLogger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as LogLine)
      cb()
    },
  })
  return { log: pino({ level: 'debug' }, stream), lines }
}

export function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mxgate-spool-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function options(dir: string, over: Partial<SpoolOptions> = {}): SpoolOptions {
  return { dir, maxMessages: 100_000, maxBytes: 1e12, minFreeBytes: 0, fsync: true, ...over }
}

export async function openStore(
  dir: string,
  over: Partial<SpoolOptions> = {},
): Promise<{ store: SpoolStore; lines: LogLine[]; opened: Awaited<ReturnType<SpoolStore['open']>> }> {
  const { log, lines } = sinkLogger()
  const store = new SpoolStore(options(dir, over), log)
  const opened = await store.open()
  return { store, lines, opened }
}

let seq = 0
export function message(
  body: string | Buffer = 'Subject: hi\r\n\r\nhello\r\n',
  to = ['a@example.com'],
): InboundMessage {
  return {
    id: `haraka-${++seq}`,
    envelope: { from: 'sender@example.org', to },
    body: Buffer.isBuffer(body) ? body : Buffer.from(body),
    receivedAt: Date.now(),
  }
}

/** A pid that certainly belonged to a process that has exited. */
export function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0'])
  if (!r.pid) throw new Error('could not spawn a short-lived node process')
  return r.pid
}

let childJs: string | undefined

/**
 * The child script and src/spool transpiled to plain JS once per test process: starting a child through tap's
 * TypeScript loader takes seconds on this machine, plain node a tenth of that.
 */
function childScript(): string {
  if (childJs) return childJs
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'mxgate-spool-child-'))
  process.on('exit', () => fs.rmSync(out, { recursive: true, force: true }))
  const root = path.join(__dirname, '..')
  const sources = [
    'test/spool-child.ts',
    ...fs.readdirSync(path.join(root, 'src/spool')).map((f) => `src/spool/${f}`),
    'src/log.ts',
  ]
  for (const rel of sources.filter((f) => f.endsWith('.ts'))) {
    const js = ts.transpileModule(fs.readFileSync(path.join(root, rel), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    }).outputText
    fs.mkdirSync(path.join(out, path.dirname(rel)), { recursive: true })
    fs.writeFileSync(path.join(out, rel.replace(/\.ts$/, '.js')), js)
  }
  childJs = path.join(out, 'test/spool-child.js')
  return childJs
}

export interface Child {
  proc: ChildProcess
  /** Every complete stdout line so far. */
  lines: string[]
  /** Resolves with the first line matching `pred` (rejects on exit or after `ms`). */
  waitFor(pred: (line: string) => boolean, ms?: number): Promise<string>
  send(line: string): void
  exited: Promise<number | null>
}

/** Run test/spool-child.ts with `args`; the test kills it on teardown. */
export function spawnChild(t: Test, args: string[]): Child {
  const proc = spawn(process.execPath, [childScript(), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    // The transpiled files live outside the project: let them find pino in its node_modules.
    env: { ...process.env, NODE_OPTIONS: '', NODE_PATH: path.join(__dirname, '..', 'node_modules') },
  })
  const lines: string[] = []
  const waiters: { pred: (l: string) => boolean; resolve: (l: string) => void }[] = []
  let stderr = ''
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    lines.push(line)
    for (const w of [...waiters]) {
      if (w.pred(line)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(line)
      }
    }
  })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    return exited
  })
  return {
    proc,
    lines,
    exited,
    send: (line) => proc.stdin?.write(`${line}\n`),
    waitFor(pred, ms = 30_000) {
      const hit = lines.find(pred)
      if (hit !== undefined) return Promise.resolve(hit)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child: no matching line in ${ms} ms; stderr: ${stderr}`)), ms)
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer)
            resolve(l)
          },
        })
        void exited.then((code) => {
          clearTimeout(timer)
          reject(new Error(`child exited (${code}) before the expected line; stderr: ${stderr}`))
        })
      })
    },
  }
}

/** Names of regular files directly in `dir` (not the claims/ and quarantine/ subdirectories). */
export function filesIn(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => d.name)
    .sort()
}
