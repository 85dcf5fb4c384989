// The process's engine. The launcher (or a test) installs the config before Haraka loads the plugin; the
// engine itself is built on first use, so a cluster master that never relays never opens anything.
import type { MxgateConfig } from '../config/schema'
import { Engine } from '../engine'

let config: MxgateConfig | null = null
let engine: Engine | null = null

export function setActiveConfig(cfg: MxgateConfig): void {
  config = cfg
}

export function activeConfig(): MxgateConfig {
  if (!config) {
    throw new Error('mxgate plugin loaded without a config: start it with `mxgate start`, not `haraka -c`')
  }
  return config
}

export function activeEngine(): Engine {
  engine ??= new Engine(activeConfig())
  return engine
}

/** The engine if one was built; never builds one. */
export function existingEngine(): Engine | null {
  return engine
}

export async function closeActiveEngine(): Promise<void> {
  const e = engine
  engine = null
  if (e) await e.close()
}

let listening = false
const listeningWaiters: Array<() => void> = []

/** Called by the plugin once Haraka's SMTP listener is bound (its init_master/init_child hook). */
export function markListening(): void {
  listening = true
  for (const fn of listeningWaiters.splice(0)) fn()
}

/** Runs `fn` once the SMTP listener is bound (at once when it already is). */
export function whenListening(fn: () => void): void {
  if (listening) fn()
  else listeningWaiters.push(fn)
}
