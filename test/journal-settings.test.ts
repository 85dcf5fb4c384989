// The journal's settings ([journal] and its environment variables) and the CLI's TIME argument: values, defaults
// and the exact error text for bad input.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { parseTimeArg } from '../src/cli/time-arg'
import { ConfigError, journalDir, loadConfig } from '../src/config/load'

const MINIMAL = '[smtp]\ndomains = example.com\n[backend.mx1]\naddress = 127.0.0.1:2601\n'

function load(t: Test, ini: string, env: NodeJS.ProcessEnv = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-cfg-'))
  writeFileSync(path.join(dir, 'mxgate.ini'), MINIMAL + ini)
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return loadConfig({ baseDir: dir, env })
}

function loadError(t: Test, ini: string): string {
  try {
    load(t, ini)
  } catch (err) {
    if (err instanceof ConfigError) return err.message.replace(/^.*mxgate\.ini:\d+: /, '')
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('defaults: on, under the spool dir, 48 h, 10 GB or 25% of the space, 50 ms batches', async (t) => {
  const cfg = load(t, '[spool]\ndir = /var/spool/mxgate\n')
  t.same(cfg.journal, {
    enabled: true,
    dir: null,
    retentionMs: 48 * 3_600_000,
    maxBytes: 10 * 1024 ** 3,
    diskShare: 0.25,
    batchMs: 50,
  })
  t.equal(journalDir(cfg), '/var/spool/mxgate/journal')
})

t.test('every key, and the environment', async (t) => {
  const cfg = load(
    t,
    '[journal]\nenabled = false\ndir = /data/journal\nretention = 6h\nmax_size = 2GB\ndisk_share = 10%\nbatch = 200ms\n',
  )
  t.same(cfg.journal, {
    enabled: false,
    dir: '/data/journal',
    retentionMs: 6 * 3_600_000,
    maxBytes: 2 * 1024 ** 3,
    diskShare: 0.1,
    batchMs: 200,
  })
  t.equal(journalDir(cfg), '/data/journal')
  const env = load(t, '', { MXGATE_JOURNAL: 'off', MXGATE_JOURNAL_DIR: '/elsewhere' })
  t.equal(env.journal.enabled, false)
  t.equal(journalDir(env), '/elsewhere')
})

t.test('bad values name the key and the fix', async (t) => {
  t.equal(loadError(t, '[journal]\nenabled = maybe\n'), 'journal.enabled: "maybe" must be true or false')
  t.equal(loadError(t, '[journal]\nretention = 10s\n'), 'journal.retention: "10s" is too short; use at least 60000ms')
  t.equal(
    loadError(t, '[journal]\nmax_size = 100k\n'),
    'journal.max_size: "100k" is too small; use at least 1MB (one segment must fit)',
  )
  t.equal(
    loadError(t, '[journal]\nmax_size = lots\n'),
    'journal.max_size: "lots" is not a size; write e.g. 500MB, 10GB',
  )
  t.equal(
    loadError(t, '[journal]\ndisk_share = 0.5\n'),
    'journal.disk_share: "0.5" must be a percentage above 0% and at most 90%, e.g. 25% (of the space the journal could use)',
  )
  t.equal(
    loadError(t, '[journal]\nbatch = 1m\n'),
    'journal.batch: "1m" must be from 1ms to 10s (the journal may lag the mail by one batch)',
  )
  t.match(loadError(t, '[journal]\nsegments = 3\n'), /journal\.segments: unknown key; \[journal\] knows: enabled, dir/)
})

t.test('TIME: ISO 8601 with a zone, or a duration ago', async (t) => {
  const now = Date.parse('2026-12-05T12:00:00Z')
  t.equal(parseTimeArg('--since', '6h', now), Date.parse('2026-12-05T06:00:00Z'))
  t.equal(parseTimeArg('--since', '90m', now), Date.parse('2026-12-05T10:30:00Z'))
  t.equal(parseTimeArg('--since', '2d', now), Date.parse('2026-12-03T12:00:00Z'))
  t.equal(parseTimeArg('--since', '2026-12-04T10:00:00Z', now), Date.parse('2026-12-04T10:00:00Z'))
  t.equal(parseTimeArg('--until', '2026-12-04T10:00:00+01:00', now), Date.parse('2026-12-04T09:00:00Z'))
  t.same(parseTimeArg('--since', '2026-12-04', now), {
    error: '--since "2026-12-04" has no time zone; add one, e.g. 2026-12-04T00:00:00Z for UTC',
  })
  t.same(parseTimeArg('--since', '6', now), {
    error:
      '--since "6" is neither an ISO 8601 time such as 2026-12-04T10:00:00Z nor a duration ago such as 90m, 6h or 2d',
  })
  t.match(parseTimeArg('--since', '2026-13-45T99:00:00Z', now), { error: /neither an ISO 8601 time/ })
})
