// The composition root: builds clients, health, pool and relay from one config. Haraka-free, so tests, the
// demo and the benchmark can run the same engine the plugin runs.
import { BackendClient, type ClientOptions } from './backend/client'
import { createStateStore, type StateStore } from './cluster'
import type { MxgateConfig } from './config/schema'
import { HealthRegistry } from './health/registry'
import { type Logger, partLogger } from './log'
import type { InboundMessage } from './message'
import { BackendPool } from './pool/picker'
import { Relay, type RelayResult } from './relay/relay'

export function clientOptions(cfg: MxgateConfig): ClientOptions {
  return {
    heloName: cfg.smtp.hostname,
    timeouts: { ...cfg.client.timeouts },
    maxSessions: cfg.client.maxSessions,
    maxMessagesPerSession: cfg.client.maxMessagesPerSession,
    idleTimeoutMs: cfg.client.idleTimeoutMs,
    starttls: cfg.client.starttls,
    tls: { rejectUnauthorized: cfg.client.tlsRejectUnauthorized },
  }
}

export class Engine {
  readonly clients = new Map<string, BackendClient>()
  readonly health: HealthRegistry
  readonly store: StateStore
  readonly pool: BackendPool
  readonly relay: Relay
  readonly log: Logger

  constructor(
    readonly config: MxgateConfig,
    /** Tests pass a fixed random source to make the pool's choice predictable. */
    options: { random?: () => number } = {},
  ) {
    this.log = partLogger('engine')
    const opts = clientOptions(config)
    for (const b of config.backends) {
      this.clients.set(b.id, new BackendClient({ id: b.id, host: b.host, port: b.port }, opts, partLogger('backend')))
    }
    this.store = createStateStore({ url: config.redis.url, prefix: config.redis.prefix, logger: partLogger('cluster') })
    this.health = new HealthRegistry(config.backends, config.breaker, {
      probe: (id, deadlineAt) => this.client(id).probe(deadlineAt),
      store: this.store,
      log: partLogger('health'),
    })
    this.pool = new BackendPool(config.backends, this.health, options.random)
    this.relay = new Relay({
      clients: this.clients,
      pool: this.pool,
      health: this.health,
      settings: config.relay,
      log: partLogger('relay'),
    })
  }

  private inFlightCount = 0

  /** Relays one message; counted so a graceful shutdown can wait for messages in flight. */
  async relayMessage(msg: InboundMessage): Promise<RelayResult> {
    this.inFlightCount++
    try {
      return await this.relay.relay(msg)
    } finally {
      this.inFlightCount--
    }
  }

  get inFlight(): number {
    return this.inFlightCount
  }

  private client(id: string): BackendClient {
    const c = this.clients.get(id)
    if (!c) throw new Error(`no client for backend ${id}`)
    return c
  }

  /** Connects the shared state store (never fails because Redis is down: the node then runs on local state). */
  async start(): Promise<void> {
    await this.store.start()
  }

  async close(): Promise<void> {
    this.health.close()
    await this.store.stop()
    await Promise.all([...this.clients.values()].map((c) => c.close()))
  }
}
