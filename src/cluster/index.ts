// The one way the rest of mxgate gets a state store: Redis when a URL is configured, memory otherwise.
import type { Logger } from '../log'
import { type IpcChannel, IpcStore } from './ipc-store'
import { defaultNodeName, MemoryStore } from './memory-store'
import { RedisStore } from './redis-store'
import type { StateStore, StoreTiming } from './types'

export interface StateStoreConfig {
  /** From config redis.url; null = in-memory, this process only. */
  url: string | null
  /** From config redis.prefix. */
  prefix: string
  node?: string
  timing?: Partial<StoreTiming>
  logger?: Logger
  /** In a Haraka worker without Redis: the IPC channel to the master, which keeps the node's shared state. */
  ipc?: IpcChannel
}

/** Throws RedisUrlError for a bad URL (at config time, before anything starts). */
export function createStateStore(config: StateStoreConfig): StateStore {
  const common = {
    ...(config.node === undefined ? {} : { node: config.node }),
    ...(config.timing === undefined ? {} : { timing: config.timing }),
  }
  if (config.url === null) {
    if (config.ipc) return new IpcStore(config.ipc, config.node ?? defaultNodeName(), config.timing)
    return new MemoryStore(common)
  }
  return new RedisStore({
    url: config.url,
    prefix: config.prefix,
    ...common,
    ...(config.logger === undefined ? {} : { logger: config.logger }),
  })
}

export { InvalidStateError, RedisUrlError, StoreOptionError, StoreStoppedError } from './errors'
export type { IpcChannel } from './ipc-store'
export { MemoryStore } from './memory-store'
export { parseRedisUrl } from './redis-options'
export { RedisStore } from './redis-store'
export type * from './types'
