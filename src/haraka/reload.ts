// A reload on this process: re-read and validate every setting first (a bad file changes nothing), then let the
// engine apply the plan and retune what the Haraka adapter holds (inbound limits, the STARTTLS pair). SIGHUP and
// POST /api/reload both come here; one reload runs at a time.
import type { ReloadView } from '../admin/types'
import { ReloadRefusedError } from '../admin/types'
import { redactConfig } from '../config/redact'
import { planReload } from '../config/reload-plan'
import type { MxgateConfig } from '../config/schema'
import type { Engine } from '../engine'
import type { Logger } from '../log'
import { retuneInboundGuard } from './inbound-guard'
import { retuneProxyHosts } from './proxy'
import { reloadStarttls } from './starttls'

export type ConfigSource = () => MxgateConfig

export class Reloader {
  private chain: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly engine: Engine,
    private readonly load: ConfigSource,
    private readonly log: Logger,
    /** The pool came from MXGATE_BACKENDS (a reload cannot change the environment). */
    private readonly poolFromEnv: boolean,
  ) {}

  /** Runs after any reload in progress. Rejects with ReloadRefusedError (and changes nothing) on a bad file. */
  reload(by: string): Promise<ReloadView> {
    const run = this.chain.then(() => this.once(by))
    this.chain = run.catch(() => undefined)
    return run
  }

  private async once(by: string): Promise<ReloadView> {
    const engine = this.engine
    let next: MxgateConfig
    try {
      next = this.load()
    } catch (err) {
      const message = `configuration not reloaded, nothing changed: ${(err as Error).message}`
      this.log.error({ by, err: (err as Error).message }, message)
      throw new ReloadRefusedError(message)
    }
    const previousVersion = engine.configVersion
    // What the reply and the log show of a value: secrets (admin tokens, the Redis password) masked.
    const shown = { running: redactConfig(engine.config), file: redactConfig(next) }
    const plan = planReload(engine.config, next, {
      poolFromEnv: this.poolFromEnv,
      file: next.files.at(-1) ?? 'config/mxgate.ini',
    })
    // A backend removed by an earlier reload and listed again before its last messages finished: its old client
    // and health are still going away. Applying now would let that retirement take the new one with it.
    const back = plan.added.filter((b) => engine.retiring.has(b.id)).map((b) => b.id)
    if (back.length > 0) {
      const message = `configuration not reloaded, nothing changed: backend ${back.join(', ')} is still finishing the messages it had when a reload removed it; reload again in a few seconds`
      this.log.warn({ by, backends: back }, message)
      throw new ReloadRefusedError(message)
    }
    const retired = engine.reconfigure(next, plan)
    retuneInboundGuard(engine.config)
    if (plan.live.some((c) => c.key === 'smtp.proxyHosts')) retuneProxyHosts(engine.config, this.log)
    const notes = [...plan.notes]
    const tlsNote = reloadStarttls(engine.config, this.log)
    if (tlsNote !== null) notes.push(tlsNote)
    const view: ReloadView = {
      node: engine.node,
      previousVersion,
      configVersion: engine.configVersion,
      files: next.files,
      added: plan.added.map((b) => b.id),
      removed: plan.removed,
      reweighted: plan.reweighted,
      changed: plan.live.map((c) => c.key),
      needsRestart: plan.restart.map((c) => ({
        key: c.key,
        running: valueAt(shown.running, c.key),
        file: valueAt(shown.file, c.key),
      })),
      notes,
    }
    this.log.info({ by, ...view }, 'configuration reloaded')
    for (const r of view.needsRestart) this.log.warn({ key: r.key }, `${r.key} changed in the file: needs a restart`)
    retired.catch((err: unknown) => this.log.error({ err }, 'retiring removed backends failed'))
    await engine.announce()
    return view
  }
}

/** The value of section.key in a config. */
function valueAt(cfg: MxgateConfig, key: string): unknown {
  const [section = '', name = ''] = key.split('.')
  return (cfg as unknown as Record<string, Record<string, unknown> | undefined>)[section]?.[name]
}
