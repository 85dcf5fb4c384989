// The Kubernetes preStop hook (deploy/container/prestop.sh) run as the kubelet runs it, against a real mxgate with
// messages in flight: it starts the drain, returns only once mxgate has exited, and every message it held was
// delivered and answered 250.
import { spawn } from 'node:child_process'
import path from 'node:path'
import t from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { ROOT, startMxgate } from './helpers/mxgate-process'
import { eventually } from './helpers/spool-e2e'

/** The backend answers the final dot this late, so the messages are in flight when the hook runs. */
const SLOW_ACCEPT_MS = 1500
const MESSAGES = 6

t.test(
  'preStop drains: mxgate exits 0 after its messages in flight are delivered, then the hook returns',
  async (t) => {
    const mx1 = new FakeBackend({ id: 'mx1', acceptDelayMs: SLOW_ACCEPT_MS })
    await mx1.start()
    t.teardown(() => mx1.stop())
    const node = await startMxgate({ backends: `mx1=127.0.0.1:${mx1.port}` })
    t.teardown(() => node.stop())
    const exited = new Promise<number | null>((resolve) => node.proc.once('exit', (code) => resolve(code)))
    const sends = Array.from({ length: MESSAGES }, (_, i) =>
      sendMessage({
        host: '127.0.0.1',
        port: node.port,
        from: 'sender@remote.test',
        to: ['user@example.com'],
        message: makeTestMessage({ messageId: `prestop-${i}@test` }),
        timeoutMs: 30_000,
      }),
    )
    const inFlight = async () => {
      const r = await fetch(`http://127.0.0.1:${node.adminPort}/api/backends/mx1`)
      return ((await r.json()) as { inFlight: number }).inFlight
    }
    t.ok(await eventually(async () => (await inFlight()) === MESSAGES, 15_000), 'all messages are in flight')

    const hook = spawn('/bin/sh', [path.join(ROOT, 'deploy', 'container', 'prestop.sh')], {
      env: { ...process.env, MXGATE_PID: String(node.proc.pid) },
      stdio: 'ignore',
    })
    let mxgateGone = false
    void exited.then(() => {
      mxgateGone = true
    })
    const hookCode = await new Promise<number | null>((resolve) => hook.once('exit', (code) => resolve(code)))
    t.equal(hookCode, 0, 'the hook exits 0')
    t.ok(mxgateGone, 'only after mxgate has exited')
    t.equal(await exited, 0, 'mxgate exited 0')
    const results = await Promise.all(sends)
    t.same(
      results.map((r) => r.code),
      Array(MESSAGES).fill(250),
      'every message in flight was answered 250',
    )
    t.equal(mx1.received.length, MESSAGES, 'and delivered')
  },
)
