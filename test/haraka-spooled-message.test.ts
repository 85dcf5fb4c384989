// A message is held once: the lines mxgate records are its only copy; Haraka's message stream stays empty (no second
// copy in memory, and no file even with connection.ini's spool_after=0, which would spool every message), and the
// byte-for-byte promise holds. A live `mxgate start` cannot be given another connection.ini, so this drives Haraka's
// real Transaction and message stream in-process, the way Haraka's connection does (the Received line, then each
// DATA line, then end_data), and hands the transaction to mxgate's real hook_queue with a real engine and fake
// backend.
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import constants from 'haraka-constants'
import t from 'tap'
import { activeEngine, closeActiveEngine, setActiveConfig } from '../src/haraka/active'
import type { HarakaConnection, HarakaTransaction } from '../src/haraka/haraka-types'
import { hook_queue } from '../src/haraka/plugin'
import { tuneHaraka } from '../src/haraka/tuning'
import { startBackends, testConfig } from './helpers/engine'

interface RealTransaction extends HarakaTransaction {
  add_data(line: Buffer | string): void
  end_data(cb: () => void): void
  message_stream: HarakaTransaction['message_stream'] & { spooling: boolean; bytes_read: number; destroy(): void }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { createTransaction } = require('Haraka/transaction') as {
  createTransaction(uuid: string, cfg: Record<string, unknown>): RealTransaction
}

const address = (a: string) => ({
  address: a,
  user: a.split('@')[0] ?? '',
  host: a.split('@')[1] ?? '',
  original: `<${a}>`,
  isNull: () => a === '',
})
const RECEIVED =
  'Received: from sender.test (127.0.0.1)\r\n\tby mxgate.localdomain (mxgate) with ESMTP id X;\r\n\tnow\r\n'

t.test(
  'Haraka keeps no copy of a message; it reaches the backend byte for byte, plus the Received header',
  async (t) => {
    const [backend] = await startBackends([{ id: 'mx1' }])
    const cfg = testConfig([backend!])
    setActiveConfig(cfg)
    tuneHaraka(cfg)
    await activeEngine().start()
    const spoolDir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-haraka-spool-'))
    t.teardown(async () => {
      await closeActiveEngine()
      await backend!.stop()
      rmSync(cfg.spool.dir, { recursive: true, force: true })
      rmSync(spoolDir, { recursive: true, force: true })
    })

    const cases: Record<string, Buffer> = {
      'a normal message': Buffer.from('Subject: x\r\nFrom: a@b\r\n\r\nbody line\r\n..stuffed\r\n'),
      'no blank line after the header': Buffer.from('Subject: x\r\nFrom: a@b\r\nbody line\r\nsecond\r\n'),
      'header only': Buffer.from('Subject: x\r\nFrom: a@b\r\n'),
      '8-bit header bytes that are not UTF-8': Buffer.from('Subject: caf\xe9 \x80\r\n\r\nbody\r\n', 'latin1'),
      // Over the 1 MB of header haraka-message-stream's HeaderSkipper allows get_data to read.
      'a 1.2 MB header section': Buffer.from(
        `${Array.from({ length: 13_000 }, (_, i) => `X-Filler-${i}: ${'f'.repeat(80)}\r\n`).join('')}\r\nbody\r\n`,
      ),
    }
    for (const [name, sent] of Object.entries(cases)) {
      // spool_after=0: Haraka would write every message it keeps to a file in spool_dir.
      const txn = createTransaction(randomUUID(), { main: { spool_after: 0, spool_dir: spoolDir }, headers: {} })
      txn.mail_from = address('sender@remote.test')
      txn.rcpt_to = [address('user@example.com')]
      txn.add_data(RECEIVED)
      for (let at = 0; at < sent.length; ) {
        const eol = sent.indexOf('\r\n', at) + 2
        txn.add_data(sent.subarray(at, eol))
        at = eol
      }
      await new Promise<void>((resolve) => txn.end_data(resolve))
      t.equal(txn.message_stream.bytes_read, 0, `${name}: Haraka's message stream holds none of it`)
      t.equal(txn.message_stream.spooling, false, `${name}: nor spools it to disk`)

      const before = backend!.received.length
      const reply = await new Promise<number | undefined>((resolve) => {
        const connection = { transaction: txn, respond: () => undefined } as unknown as HarakaConnection
        hook_queue(resolve, connection)
      })
      t.equal(reply, constants.ok, `${name}: hook_queue accepts it`)
      t.equal(backend!.received.length, before + 1)
      const wire = backend!.received.at(-1)!.wire
      const expected = Buffer.concat([Buffer.from(RECEIVED), sent])
      t.equal(wire.toString('latin1'), expected.toString('latin1'), `${name}: byte for byte`)
      txn.message_stream.destroy()
    }
    t.same(readdirSync(spoolDir), [], 'no Haraka spool file was written')
  },
)
