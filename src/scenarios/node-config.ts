// The mxgate.ini both nodes of a scenario run with: the harness's own keys, then the row's overrides, then (quick)
// the row's CI overrides, then the keys the harness must own. Checked with mxgate's own loader before any process
// starts, so a row this build cannot run (a `[detector]` section before the detector exists) is reported, not run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseIni } from '../config/ini'
import type { loadConfig } from '../config/load'

/**
 * Spooled mail is retried within seconds (the run waits for the spools to empty), and without fsync: the suite
 * measures routing, not the disk.
 */
const HARNESS_DEFAULTS = ['[spool]', 'fsync = false', 'retry_first = 1s', 'retry_max = 5s', ''].join('\n')

/** Layers ini texts: a later layer's key replaces an earlier one's; sections keep their first position. */
export function layerIni(layers: readonly string[]): string {
  const sections = new Map<string, Map<string, string>>()
  layers.forEach((text, i) => {
    for (const s of parseIni(text, `layer ${i}`)) {
      const keys = sections.get(s.name) ?? new Map<string, string>()
      for (const e of s.entries) keys.set(e.key, e.value)
      sections.set(s.name, keys)
    }
  })
  const out: string[] = []
  for (const [name, keys] of sections) {
    if (keys.size === 0) continue
    if (name !== '') out.push(`[${name}]`)
    for (const [k, v] of keys) out.push(`${k} = ${v}`)
  }
  return `${out.join('\n')}\n`
}

export interface NodeConfigInput {
  rowIni: string
  quickIni?: string
  bounceRelayPort: number
}

export function nodeIni(input: NodeConfigInput): string {
  const owned = `[spool]\nbounce_relay = 127.0.0.1:${input.bounceRelayPort}\n`
  return layerIni([HARNESS_DEFAULTS, input.rowIni, input.quickIni ?? '', owned])
}

/**
 * null when the loader of the build the nodes run (root/dist) accepts the ini with these backends, else its error
 * message. Loaded from that build, not imported: with --mxgate-root it is another checkout's loader.
 */
export function refusal(ini: string, root: string, backends: string): string | null {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-scenario-check-'))
  try {
    writeFileSync(path.join(dir, 'mxgate.ini'), ini)
    const load = require(path.join(root, 'dist', 'config', 'load.js')) as { loadConfig: typeof loadConfig }
    load.loadConfig({
      baseDir: path.join(root, 'config'),
      overrideDir: dir,
      env: { MXGATE_BACKENDS: backends, MXGATE_DOMAINS: 'example.com' },
    })
    return null
  } catch (err) {
    // By code, not instanceof: the class comes from that build's module.
    if ((err as { code?: unknown }).code === 'ECONFIG') return (err as Error).message.replace(`${dir}/`, '')
    throw err
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
