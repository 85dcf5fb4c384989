// `npm run scenarios`: each row of rows.ts with two mxgate nodes (in-process engines: relay, breakers, detector,
// spool) sharing one throwaway redis-server, the fake backends, a bounded, paced load sent alternately to the two
// nodes; prints one table and exits 1 if a row does not show what it must. SCENARIO_SCALE scales the message counts.
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { toWireForm } from '../backend/wire'
import { loadConfig } from '../config/load'
import { Engine } from '../engine'
import { setRootLogger } from '../log'
import type { AcceptResult } from '../relay/accept'
import { FakeBackend } from '../testing/fake-backend'
import { createRng } from '../testing/fault-rules'
import { freePort } from '../testing/free-port'
import { makeTestMessage } from '../testing/smtp-sender'
import { type Scenario, scenarios } from './rows'

interface Row {
  name: string
  sent: number
  ejected: string[]
  untilEjection: string
  falseEjections: number
  wouldEject: string[]
  degraded: boolean
  frozen: boolean
  bounced: number
  lost: number
  duplicates: number
  ok: boolean
  expect: string
}

async function startRedis(): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = await freePort()
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-scen-redis-'))
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  )
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.end()
        resolve(true)
      })
      s.on('error', () => resolve(false))
    })
    if (up) break
    await sleep(50)
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

function message(): Parameters<Engine['accept']>[0] {
  return {
    id: randomUUID(),
    envelope: { from: 'sender@remote.test', to: ['user@example.com'] },
    body: toWireForm(makeTestMessage({ to: ['user@example.com'] })),
    receivedAt: Date.now(),
  }
}

async function play(s: Scenario, redisUrl: string, seed: number): Promise<Row> {
  const backends = s.backends.map(
    (b, i) => new FakeBackend({ id: `b${i + 1}`, seed: seed * 100 + i, ...(b.faults ? { faults: b.faults } : {}) }),
  )
  await Promise.all(backends.map((b) => b.start()))
  const prefix = `scenario-${randomUUID()}:`
  const spoolDirs: string[] = []
  const node = async (name: string, rngSeed: number) => {
    const cfg = loadConfig({
      baseDir: path.join(os.tmpdir(), 'mxgate-no-such-dir'),
      env: {
        MXGATE_BACKENDS: backends
          .map((b, i) => `${b.id}=127.0.0.1:${b.port}*${s.backends[i]?.weight ?? 100}`)
          .join(','),
        MXGATE_DOMAINS: 'example.com',
      },
    })
    cfg.redis.url = redisUrl
    cfg.redis.prefix = prefix
    cfg.detector.bucketMs = 1000
    cfg.detector.retentionMs = 300_000
    if (s.observe) cfg.detector.mode = 'observe'
    cfg.breaker.ejectionMs = 300_000 // out for the rest of the row
    cfg.breaker.maxEjectionMs = 300_000
    cfg.spool.dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-scen-spool-'))
    cfg.spool.fsync = false
    spoolDirs.push(cfg.spool.dir)
    const engine = new Engine(cfg, { random: createRng(rngSeed), node: name })
    await engine.start()
    return engine
  }
  const nodes = [await node('A', seed), await node('B', seed + 1)]
  const ejected: Array<{ id: string; at: number; own: number; evidence: string }> = []
  const wouldEject = new Set<string>()
  let degraded = false
  let frozen = false
  const attemptsTo = new Map<string, number>()
  let sent = 0
  for (const n of nodes) {
    n.health.on(
      'ejection',
      (e: { id: string; cause: string; local: boolean; evidence: { faults: number; messages: number } | null }) => {
        if (e.local && (e.cause === 'detector' || e.cause === 'probation') && !ejected.some((x) => x.id === e.id)) {
          const evidence = e.evidence ? `${e.evidence.faults}/${e.evidence.messages}` : '-'
          ejected.push({ id: e.id, at: sent, own: attemptsTo.get(e.id) ?? 0, evidence })
        }
      },
    )
    n.detector.on('wouldEject', (e) => wouldEject.add(e.id))
    n.detector.on('round', (r) => {
      degraded ||= r.degraded
      frozen ||= r.frozen
    })
  }
  const results: AcceptResult[] = []
  while (sent < s.max) {
    if (s.stopAfter !== undefined && ejected.filter((e) => s.targets.includes(e.id)).length >= s.stopAfter) break
    if (s.observe && s.targets.every((id) => wouldEject.has(id))) break
    const r = await nodes[sent % 2]!.accept(message())
    for (const a of r.relay.attempts) attemptsTo.set(a.backendId, (attemptsTo.get(a.backendId) ?? 0) + 1)
    results.push(r)
    sent++
    if (sent % 10 === 0) await sleep(25) // ~300 msg/s: the shared counts (1 s flush, 2 s poll) keep up
  }
  await sleep(2500) // the last counts reach Redis and the last rounds run
  await Promise.all(nodes.map((n) => n.close()))
  const ids = backends.flatMap((b) => b.received.map((m) => m.messageId))
  const duplicates = ids.length - new Set(ids).size
  await Promise.all(backends.map((b) => b.stop()))
  for (const d of spoolDirs) rmSync(d, { recursive: true, force: true })

  const bounced = results.reduce((a, r) => a + r.relay.refused.length + (r.relay.outcome === 'rejected' ? 1 : 0), 0)
  const lost = results.filter((r) => r.outcome === 'spool-failed').length
  const hit = ejected.filter((e) => s.targets.includes(e.id))
  const falseEjections = ejected.length - hit.length
  const first = hit[0]
  const untilEjection = first ? `${first.at} (own ${first.own}; evidence ${first.evidence})` : '-'
  let ok = bounced === 0 && lost === 0 && duplicates === 0 && falseEjections === 0
  if (s.observe) ok &&= ejected.length === 0 && s.targets.every((id) => wouldEject.has(id))
  else if (s.targets.length === 0) ok &&= ejected.length === 0
  else if (s.stopAfter !== undefined) ok &&= hit.length >= s.stopAfter
  else ok &&= hit.length <= 1 && frozen // the budget row
  if (s.name.includes('fail 20%')) ok &&= degraded
  return {
    name: s.name,
    sent,
    ejected: ejected.map((e) => e.id),
    untilEjection,
    falseEjections,
    wouldEject: [...wouldEject],
    degraded,
    frozen,
    bounced,
    lost,
    duplicates,
    ok,
    expect: s.expect,
  }
}

function table(rows: Row[]): string {
  const head = [
    'scenario',
    'sent',
    'ejected',
    'msgs until ejection',
    'false',
    'would eject',
    'degraded',
    'frozen',
    'bounced',
    'lost',
    'dups',
    'result',
    'must show',
  ]
  const cells = rows.map((r) => [
    r.name,
    String(r.sent),
    r.ejected.join(' ') || '-',
    r.untilEjection,
    String(r.falseEjections),
    r.wouldEject.join(' ') || '-',
    r.degraded ? 'yes' : 'no',
    r.frozen ? 'yes' : 'no',
    String(r.bounced),
    String(r.lost),
    String(r.duplicates),
    r.ok ? 'PASS' : 'FAIL',
    r.expect,
  ])
  const line = (c: string[]) => `| ${c.join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...cells.map(line)].join('\n')
}

async function main(): Promise<number> {
  setRootLogger(pino({ level: process.env.MXGATE_LOG_LEVEL ?? 'silent' }))
  const scale = Number(process.env.SCENARIO_SCALE ?? '1')
  const seed = Number(process.env.SCENARIO_SEED ?? '1')
  const only = process.env.SCENARIO_ONLY
  const redis = await startRedis()
  const rows: Row[] = []
  try {
    for (const [i, s] of scenarios(scale).entries()) {
      if (only !== undefined && !only.split(',').includes(String(i + 1))) continue
      const started = Date.now()
      const row = await play(s, redis.url, seed + i * 10)
      rows.push(row)
      process.stderr.write(
        `scenario ${i + 1}: ${row.ok ? 'PASS' : 'FAIL'} (${Math.round((Date.now() - started) / 1000)}s)\n`,
      )
    }
  } finally {
    await redis.stop()
  }
  process.stdout.write(`${table(rows)}\n`)
  return rows.every((r) => r.ok) ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`scenarios: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exit(2)
  },
)
