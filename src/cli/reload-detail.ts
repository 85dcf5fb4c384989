// What `mxgate reload` prints, and the per-node config versions under `mxgate status`: text only, no I/O.
import type { NodeView, ReloadView } from '../admin/types'
import { safeText } from './terminal-text'

/** A reload's reply as lines: versions, pool changes, what changed live, what needs a restart, notes. */
export function reloadText(v: ReloadView): string {
  const out: string[] = []
  const same = v.previousVersion === v.configVersion
  out.push(
    same
      ? `reloaded ${safeText(v.node)}: config ${v.configVersion} (nothing changed live)`
      : `reloaded ${safeText(v.node)}: config ${v.previousVersion} → ${v.configVersion}`,
  )
  if (v.added.length > 0) out.push(`  added (in probation): ${v.added.map(safeText).join(', ')}`)
  if (v.removed.length > 0) out.push(`  removed (messages in flight finish): ${v.removed.map(safeText).join(', ')}`)
  for (const r of v.reweighted) out.push(`  weight of ${safeText(r.id)}: ${r.from} → ${r.to}`)
  if (v.changed.length > 0) out.push(`  changed: ${v.changed.join(', ')}`)
  for (const r of v.needsRestart) {
    out.push(`  needs a restart: ${r.key} (running ${JSON.stringify(r.running)}, file ${JSON.stringify(r.file)})`)
  }
  for (const n of v.notes) out.push(`  note: ${safeText(n)}`)
  return `${out.join('\n')}\n`
}

/** Each node and the settings it runs; a node whose version differs from this one's is marked. */
export function nodesText(version: string | undefined, nodes: NodeView[] | undefined, now: number): string {
  if (version === undefined) return ''
  const list = nodes ?? []
  if (list.length <= 1) return `config ${version}\n`
  const lines = list.map((n) => {
    const age = Math.max(0, Math.round((now - n.at) / 1000))
    const mark = n.configVersion === version ? '' : '  ← differs from this node: reload it or check its files'
    return `  ${safeText(n.node)}  config ${safeText(n.configVersion)}  seen ${age}s ago${mark}`
  })
  return `nodes (config version each runs):\n${lines.join('\n')}\n`
}
