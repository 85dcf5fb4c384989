// Verdicts shared through Redis: one string key per address under `<prefix>verify:`, expiring with the verdict. A
// command client of its own that fails fast (no offline queue, short timeout): a lookup that fails is a miss and the
// backends are asked, so Redis down never refuses or delays a recipient for long.

import { createRedisClient, DEFAULT_TUNING, parseRedisUrl, type RedisClient } from '../cluster/redis-options'
import type { Logger } from '../log'
import type { SharedVerdicts, StoredVerdict } from './cache'

/** A verdict lookup is on the RCPT path: it must not cost more than asking a backend would. */
const COMMAND_TIMEOUT_MS = 200

export class RedisVerdicts implements SharedVerdicts {
  private client: RedisClient | null = null
  private failures = 0

  constructor(
    private readonly url: string,
    private readonly prefix: string,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tuning = { ...DEFAULT_TUNING, commandTimeoutMs: COMMAND_TIMEOUT_MS, connectionName: 'mxgate-verify' }
    const client = createRedisClient(parseRedisUrl(this.url), 'command', tuning)
    client.on('error', (err: Error) => this.fault('connection', err))
    this.client = client
  }

  stop(): void {
    this.client?.disconnect()
    this.client = null
  }

  key(address: string): string {
    return `${this.prefix}verify:${address}`
  }

  async get(address: string): Promise<StoredVerdict | null> {
    const client = this.client
    if (client === null || client.status !== 'ready') return null
    try {
      const raw = await client.get(this.key(address))
      this.failures = 0
      return raw === null ? null : parseStored(raw)
    } catch (err) {
      this.fault('get', err as Error)
      return null
    }
  }

  set(address: string, stored: StoredVerdict): void {
    const client = this.client
    if (client === null || client.status !== 'ready') return
    const ttl = Math.max(1, stored.expiresAt - Date.now())
    client
      .set(this.key(address), JSON.stringify(stored), 'PX', ttl)
      .catch((err: unknown) => this.fault('set', err as Error))
  }

  /** Logged once per run of failures, not per command. */
  private fault(what: string, err: Error): void {
    if (this.failures++ === 0)
      this.log.warn({ err: err.message, what }, 'verdict cache in Redis unavailable; asking backends')
  }
}

/** A stored verdict, or null for anything that is not one (another writer, an old format). */
export function parseStored(raw: string): StoredVerdict | null {
  try {
    const v = JSON.parse(raw) as StoredVerdict
    if (typeof v?.expiresAt !== 'number' || typeof v.verdict?.known !== 'boolean') return null
    if (!v.verdict.known && typeof v.verdict.reply?.code !== 'number') return null
    return v
  } catch {
    return null
  }
}
