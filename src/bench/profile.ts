// Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went: self time by owner (the nearest npm package
// or mxgate directory on the stack, so Node internals count for whoever called them) and by function.
// Usage: node dist/bench/profile.js FILE.cpuprofile [--top N]
import { readFileSync } from 'node:fs'
import { BenchError } from './errors'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}

interface ProfileNode {
  id: number
  callFrame: CallFrame
  children?: number[]
}

export interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

export interface ProfileSummary {
  totalMs: number
  /** Self time by owner, largest first. Socket writes are split out: their time is mostly the kernel's. */
  byOwner: [string, number][]
  byFunction: [string, number][]
}

const VM_STATES = new Set(['(idle)', '(program)', '(garbage collector)'])
const SOCKET_WRITES = new Set(['writeUtf8String', 'writev', 'writeString', 'writeBuffer', 'writeLatin1String'])

/** 'node_modules/haraka-results/index.js' → 'haraka-results'; '/dist/backend/x.js' → 'mxgate/backend'. */
export function ownerOf(url: string): string | null {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (pkg) return pkg[1] ?? null
  const dir = /\/dist\/([^/]+)\//.exec(url)
  if (dir) return `mxgate/${dir[1]}`
  return url.includes('/dist/') ? 'mxgate' : null
}

function label(f: CallFrame): string {
  const where = f.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')
  return `${f.functionName || '(anonymous)'} ${where}:${f.lineNumber + 1}`
}

function sorted(m: Map<string, number>): [string, number][] {
  return [...m].sort((a, b) => b[1] - a[1])
}

export function summarizeProfile(p: CpuProfile): ProfileSummary {
  const byId = new Map<number, ProfileNode>()
  const parent = new Map<number, number>()
  for (const n of p.nodes) {
    byId.set(n.id, n)
    for (const c of n.children ?? []) parent.set(c, n.id)
  }
  const selfUs = new Map<number, number>()
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number
    selfUs.set(id, (selfUs.get(id) ?? 0) + (p.timeDeltas[i] ?? 0))
  }

  const owners = new Map<string, number>()
  const functions = new Map<string, number>()
  let total = 0
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)?.callFrame
    if (!frame) continue
    total += us
    functions.set(label(frame), (functions.get(label(frame)) ?? 0) + us)
    // Module loading at startup counts as such, whatever package was being loaded.
    let owner: string | null = VM_STATES.has(frame.functionName) ? frame.functionName : null
    let nearest: string | null = null
    for (let cur: number | undefined = id; cur !== undefined && owner === null; cur = parent.get(cur)) {
      const f = byId.get(cur)?.callFrame
      if (!f) break
      if (f.functionName === 'Module._load') owner = '(module loading)'
      nearest ??= ownerOf(f.url)
    }
    owner ??= nearest ?? '(node, no package)'
    if (SOCKET_WRITES.has(frame.functionName)) owner += ' [socket write]'
    owners.set(owner, (owners.get(owner) ?? 0) + us)
  }
  const ms = (m: Map<string, number>) => sorted(m).map(([k, v]): [string, number] => [k, v / 1000])
  return { totalMs: total / 1000, byOwner: ms(owners), byFunction: ms(functions) }
}

export function formatSummary(s: ProfileSummary, top: number): string {
  const line = ([k, v]: [string, number]) =>
    `${v.toFixed(0).padStart(8)} ms ${((100 * v) / s.totalMs).toFixed(1).padStart(5)}%  ${k}`
  return [
    `total ${s.totalMs.toFixed(0)} ms sampled`,
    '--- self time by owner',
    ...s.byOwner.slice(0, top).map(line),
    '--- self time by function',
    ...s.byFunction.slice(0, top).map(line),
  ].join('\n')
}

function main(argv: string[]): void {
  const file = argv[0]
  const topAt = argv.indexOf('--top')
  const top = topAt >= 0 ? Number(argv[topAt + 1]) : 30
  if (file === undefined || file.startsWith('--') || !Number.isInteger(top) || top < 1) {
    throw new BenchError('EBENCHARGS', 'usage: node dist/bench/profile.js FILE.cpuprofile [--top N]')
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  console.log(formatSummary(summarizeProfile(profile), top))
}

if (require.main === module) {
  try {
    main(process.argv.slice(2))
  } catch (err) {
    console.error(`profile: ${(err as Error).message}`)
    process.exitCode = 1
  }
}
