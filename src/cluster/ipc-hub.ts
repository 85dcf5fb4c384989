// The master side of IpcStore: holds the node's backend state and relays every change to all workers, so a
// manual eject that lands on one worker (through the shared admin port) takes the backend out on all of them.
import type { Worker } from 'node:cluster'
import cluster from 'node:cluster'
import type { Logger } from '../log'
import { TOKEN_SHAPE } from './canary-tokens'
import { isIpcMessage } from './ipc-store'
import { MemoryStore } from './memory-store'
import type { AutoEjection, ManualOverride } from './types'

const validToken = (t: unknown) => typeof t === 'string' && TOKEN_SHAPE.test(t)
const validMs = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v >= 0

export function startIpcHub(log: Logger): MemoryStore {
  const state = new MemoryStore({ node: 'master' })
  void state.start()
  const broadcast = (m: object) => {
    for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected()) w.send(m)
  }
  cluster.on('message', (worker: Worker, m: unknown) => {
    if (!isIpcMessage(m)) return
    if (m.op === 'hello') {
      worker.send({
        mxgate: 'state',
        op: 'snapshot',
        overrides: [...state.overrides()],
        ejections: [...state.ejections()],
      })
      return
    }
    if (m.op === 'canary-sent') {
      if (validToken(m.token) && validMs(m.ttlMs)) state.canarySent(m.token, m.ttlMs)
      return
    }
    if (m.op === 'canary-return') {
      if (!validToken(m.token) || !validMs(m.ttlMs) || !validMs(m.at)) {
        worker.send({ mxgate: 'state', op: 'canary-ack', req: m.req, result: 'unknown' })
        return
      }
      void state.canaryReturned(m.token, m.at, m.ttlMs).then((result) => {
        worker.send({ mxgate: 'state', op: 'canary-ack', req: m.req, result })
        // Every worker hears it: the sender marks its canary returned, the others ignore it.
        if (result !== 'repeated')
          broadcast({ mxgate: 'state', op: 'canary-returned', token: m.token, at: m.at, ttlMs: m.ttlMs })
      })
      return
    }
    if (m.op !== 'put') return
    const apply =
      m.kind === 'override'
        ? state.setOverride(m.id, m.value as ManualOverride | null)
        : state.setEjection(m.id, m.value as AutoEjection | null)
    apply.then(
      () => broadcast(m),
      (err: unknown) => log.warn({ err, id: m.id }, 'ignored a malformed state change from a worker'),
    )
  })
  return state
}
