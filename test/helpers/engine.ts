// An in-process engine (no Haraka) over real fake backends, with small timeouts so fault tests run fast.
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import { loadConfig } from '../../src/config/load'
import type { MxgateConfig } from '../../src/config/schema'
import { Engine } from '../../src/engine'
import { setRootLogger } from '../../src/log'
import { FakeBackend, type FakeBackendOptions } from '../../src/testing/fake-backend'

// Tests keep logs off the console unless MXGATE_TEST_LOG is set.
setRootLogger(pino({ level: process.env.MXGATE_TEST_LOG ?? 'silent' }))

export interface Rig {
  engine: Engine
  backends: FakeBackend[]
  config: MxgateConfig
  close(): Promise<void>
}

export async function startBackends(specs: FakeBackendOptions[]): Promise<FakeBackend[]> {
  const list = specs.map((s, i) => new FakeBackend({ id: `b${i + 1}`, ...s }))
  await Promise.all(list.map((b) => b.start()))
  return list
}

/** Fast-failing settings: per-stage timeouts of a few hundred ms, short ejections. */
export function testConfig(backends: FakeBackend[], tweak?: (c: MxgateConfig) => void): MxgateConfig {
  const cfg = loadConfig({
    baseDir: path.join(os.tmpdir(), 'mxgate-no-such-dir'),
    env: {
      MXGATE_BACKENDS: backends.map((b) => `${b.id}=127.0.0.1:${b.port}`).join(','),
      MXGATE_DOMAINS: 'example.com',
    },
  })
  const t = cfg.client.timeouts
  Object.assign(t, { connect: 500, banner: 500, ehlo: 500, mail: 500, rcpt: 500, data: 500, dot: 800, rset: 300 })
  cfg.relay.deadlineMs = 5000
  cfg.spool.dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-spool-'))
  cfg.breaker.ejectionMs = 300
  cfg.breaker.maxEjectionMs = 2000
  cfg.breaker.slowStartMs = 200
  // Probation ends on time alone here (tests that count good messages set this themselves).
  cfg.breaker.probationMessages = 0
  tweak?.(cfg)
  return cfg
}

/** `order: 'first'` makes the pool pick the first admitted backend in config order (deterministic tests). */
export async function startRig(
  specs: FakeBackendOptions[],
  opts: { tweak?: (c: MxgateConfig) => void; order?: 'first' | 'random' } = {},
): Promise<Rig> {
  const backends = await startBackends(specs)
  const config = testConfig(backends, opts.tweak)
  const engine = new Engine(config, opts.order === 'random' ? {} : { random: () => 0 })
  await engine.start()
  return {
    engine,
    backends,
    config,
    async close() {
      await engine.close()
      await Promise.all(backends.map((b) => b.stop()))
      rmSync(config.spool.dir, { recursive: true, force: true })
    },
  }
}
