// mxgate runs from a read-only install directory (systemd ProtectSystem=strict, a container's read-only root): it
// writes nothing there, not even the outbound queue directory Haraka creates at start (which, unwritable, made
// Haraka exit with "Loading queue failed").
import { cpSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { ROOT, startMxgate } from './helpers/mxgate-process'

/** Every path under `dir`, except inside node_modules (a link to the project's). */
function listing(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((p) => !p.startsWith('node_modules'))
    .sort()
}

for (const workers of ['0', '2']) {
  t.test(`a node with ${workers} workers writes nothing into its install directory`, async (t) => {
    const install = mkdtempSync(path.join(os.tmpdir(), 'mxgate-install-'))
    t.teardown(() => rmSync(install, { recursive: true, force: true }))
    for (const part of ['bin', 'dist', 'config', 'plugins', 'package.json']) {
      cpSync(path.join(ROOT, part), path.join(install, part), { recursive: true })
    }
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(install, 'node_modules'))
    const before = listing(install)
    const mx1 = new FakeBackend({ id: 'mx1' })
    await mx1.start()
    t.teardown(() => mx1.stop())
    const node = await startMxgate({
      backends: `mx1=127.0.0.1:${mx1.port}`,
      root: install,
      env: { MXGATE_WORKERS: workers },
    })
    t.teardown(() => node.stop())
    const r = await sendMessage({
      host: '127.0.0.1',
      port: node.port,
      from: 'a@remote.test',
      to: ['b@example.com'],
      message: makeTestMessage(),
      timeoutMs: 30_000,
    })
    t.equal(r.code, 250, 'it relays')
    t.same(listing(install), before, 'no file or directory appeared in the install directory')
  })
}
