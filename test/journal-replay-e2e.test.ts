// The replay journal through real mxgate processes: a backend that answers 250 and loses mail, `mxgate replay` of
// its window, idempotence and --again, a node killed mid-replay, a full journal disk, and bad inputs.
import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import type { FakeBackend } from '../src/testing/fake-backend'
import { makeTestMessage, sendMany } from '../src/testing/smtp-sender'
import { runMxgate } from './helpers/mxgate-process'
import {
  api,
  backend,
  configDir,
  eventually,
  type Node,
  receipts,
  runnerLookedAgain,
  startNode,
  tempDir,
} from './helpers/spool-e2e'
import { fillDisk, tinyDisk } from './helpers/tiny-disk'

/** Between two looks at the spool directory while waiting for a replay to have begun. */
const SPOOL_POLL_MS = 5

async function cli(node: Node, ...args: string[]) {
  return runMxgate(
    [...args, '--admin', node.adminUrl, '--token-file', node.tokenFile],
    { MXGATE_ADMIN_TOKEN: '' },
    60_000,
  )
}

/** Sends `count` messages with Message-IDs `<prefix>-<i>@test`; resolves the ids the senders got 250 for. */
async function sendBatch(node: Node, prefix: string, count: number): Promise<string[]> {
  const results = await sendMany({
    target: { host: '127.0.0.1', port: node.port },
    count,
    concurrency: 8,
    make: (i) => ({
      from: 'sender@remote.test',
      to: [`user${i % 5}@example.com`],
      message: makeTestMessage({ messageId: `${prefix}-${i}@test` }),
    }),
  })
  return results.flatMap((r, i) => (r.ok && r.code === 250 ? [`${prefix}-${i}@test`] : []))
}

async function metric(node: Node, name: string): Promise<number> {
  const r = await api<string>(node, 'GET', '/metrics')
  const line = String(r.body)
    .split('\n')
    .find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1))
}

function countAt(backends: FakeBackend[], ids: string[]): Map<string, number> {
  const by = receipts(backends)
  return new Map(ids.map((id) => [id, by.get(id)?.length ?? 0]))
}

t.test(
  'after a replay of the bad backend window every message the senders got 250 for is at a healthy one',
  async (t) => {
    const bad = await backend(t, { id: 'bad', discardShare: 1 })
    const good1 = await backend(t, { id: 'good1' })
    const good2 = await backend(t, { id: 'good2' })
    const spoolDir = tempDir(t, 'mxgate-journal-e2e-')
    const node = await startNode(t, { backends: [bad, good1, good2], config: configDir(t, ''), spoolDir })

    const sent = await sendBatch(node, 'lost', 60)
    t.equal(sent.length, 60, 'every sender got 250')
    const lost = bad.discarded.map((m) => m.messageId!)
    t.ok(lost.length > 0, `the bad backend accepted and lost ${lost.length} of them`)
    const goods = [good1, good2]
    t.ok(
      [...countAt(goods, sent).values()].some((n) => n === 0),
      'before the replay some messages are nowhere',
    )
    t.ok(
      await eventually(async () => (await metric(node, 'mxgate_journal_entries_written_total')) === 60, 5000),
      'all 60 are journaled (within a batch of the 250s)',
    )

    const ls = await cli(node, 'journal', 'ls', '--backend', 'bad', '--since', '10m')
    t.equal(ls.code, 0, ls.stderr)
    t.match(ls.stdout, `bad took ${lost.length} message`, 'journal ls lists what bad took')
    t.match(ls.stdout, `a replay would send ${lost.length} message`)

    const dry = await cli(node, 'replay', '--backend', 'bad', '--since', '10m', '--dry-run')
    t.equal(dry.code, 0, dry.stderr)
    t.match(dry.stdout, `would put back ${lost.length} message`)

    const replay = await cli(node, 'replay', '--backend', 'bad', '--since', '10m')
    t.equal(replay.code, 0, replay.stderr)
    t.match(replay.stdout, `put back ${lost.length} message`, 'replay says how many')
    t.match(replay.stdout, /\(\d+(\.\d)? (B|KB)\)/, 'and how many bytes')
    t.ok(
      await eventually(() => [...countAt(goods, sent).values()].every((n) => n >= 1), 20_000),
      'every message the senders got 250 for is at a healthy backend',
    )
    t.same(
      [...countAt(goods, lost).values()].filter((n) => n !== 1),
      [],
      'the lost ones exactly once',
    )
    t.equal(bad.received.length + bad.discarded.length, lost.length, 'nothing replayed went to the bad backend')

    const twice = await cli(node, 'replay', '--backend', 'bad', '--since', '10m')
    t.equal(twice.code, 0, twice.stderr)
    t.match(twice.stdout, 'put back 0 messages', 'a second replay of the window sends nothing')
    t.match(twice.stdout, `${lost.length} message${lost.length === 1 ? '' : 's'} an earlier replay sent left out`)
    await runnerLookedAgain(node)
    t.same(
      [...countAt(goods, lost).values()].filter((n) => n !== 1),
      [],
      'still exactly once each',
    )

    // The API, as a pipeline would call it: ISO times, and the audit line.
    const since = new Date(Date.now() - 600_000).toISOString()
    const again = await api<{ messages: number; skipped: number }>(node, 'POST', '/api/replay', {
      backend: 'bad',
      since,
      again: true,
    })
    t.equal(again.status, 200, JSON.stringify(again.body))
    t.equal(again.body.messages, lost.length, 'again: true sends them once more')
    t.ok(
      await eventually(() => [...countAt(goods, lost).values()].every((n) => n === 2), 20_000),
      'so each lost message now arrived twice (the duplicate the README warns about)',
    )
    const audit = node.proc.logs.filter((l) => l.audit === true && String(l.what).startsWith('replay bad'))
    t.equal(audit.length, 3, 'each replay is audited (the dry run as "replay (dry run)")')
    t.match(audit.at(-1), { why: null, messages: lost.length, again: true, status: 200 })
    t.equal(await metric(node, 'mxgate_journal_replayed_messages_total'), 2 * lost.length, 'replays are counted')
    t.ok((await metric(node, 'mxgate_journal_bytes')) > 0, 'the journal size is exported')
    t.ok((await metric(node, 'mxgate_journal_oldest_entry_age_seconds')) >= 0)
  },
)

t.test('bad times and backends get clear errors', async (t) => {
  const mx = await backend(t, { id: 'mx1' })
  const node = await startNode(t, {
    backends: [mx],
    config: configDir(t, ''),
    spoolDir: tempDir(t, 'mxgate-journal-e2e-'),
  })
  const cases: [string[], RegExp][] = [
    [['replay', '--backend', 'nosuch', '--since', '1h'], /unknown backend "nosuch"; known: mx1/],
    [['replay', '--backend', 'mx1', '--since', 'yesterday'], /--since "yesterday" is neither an ISO 8601 time/],
    [
      ['replay', '--backend', 'mx1', '--since', '2026-12-04T10:00:00'],
      /has no time zone; add one, e\.g\. 2026-12-04T10:00:00Z/,
    ],
    [['replay', '--since', '1h'], /--backend is required/],
    [['replay', '--backend', 'mx1'], /--since is required/],
    [['replay', '--backend', 'mx1', '--since', '1h', '--until', '2h'], /until .* must be after since/],
    [['replay', '--backend', 'mx1', '--since', '1h', '--bogus'], /unknown option --bogus/],
    [['journal', 'ls', '--backend', 'mx1'], /--since is required/],
    [['journal', 'rm'], /unknown journal command "rm"/],
  ]
  for (const [args, want] of cases) {
    const r = await cli(node, ...args)
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`)
    t.match(r.stderr, want, `${args.join(' ')}: ${r.stderr.trim()}`)
  }
  const future = await api<{ error: string }>(node, 'POST', '/api/replay', {
    backend: 'mx1',
    since: new Date(Date.now() + 3_600_000).toISOString(),
  })
  t.equal(future.status, 400)
  t.match(future.body.error, /since .* is in the future/)
  const notIso = await api<{ error: string }>(node, 'POST', '/api/replay', { backend: 'mx1', since: '6h' })
  t.equal(notIso.status, 400)
  t.match(notIso.body.error, /since must be an ISO 8601 time with a zone such as "2026-12-04T10:00:00Z", got "6h"/)
  const unknown = await api<{ error: string }>(node, 'POST', '/api/replay', { backend: 'mx1', since: '6h', dryrun: 1 })
  t.match(unknown.body.error, /unknown field "dryrun" in the replay request/)
  const flag = await api<{ error: string }>(node, 'POST', '/api/replay', {
    backend: 'mx1',
    since: new Date(Date.now() - 1000).toISOString(),
    dry_run: 'yes',
  })
  t.match(flag.body.error, /dry_run must be true or false/)
  const noToken = await fetch(`${node.adminUrl}/api/journal?backend=mx1&since=2026-01-01T00:00:00Z`)
  t.equal(noToken.status, 401, 'reading the journal needs the token (it shows envelope addresses)')
})

t.test('a node killed in the middle of a replay loses nothing: after a restart the spool delivers', async (t) => {
  const bad = await backend(t, { id: 'bad', discardShare: 1 })
  const good = await backend(t, { id: 'good' })
  const spoolDir = tempDir(t, 'mxgate-journal-kill-')
  const config = configDir(t, '[breaker]\nejection_time = 300ms\n')
  const first = await startNode(t, { backends: [bad, good], config, spoolDir })
  const sent = await sendBatch(first, 'kill', 200)
  t.equal(sent.length, 200)
  const lost = bad.discarded.map((m) => m.messageId!)
  t.ok(lost.length > 20, `the bad backend lost ${lost.length}`)
  // The good backend refuses for now: replayed mail must wait in the spool, across the kill.
  await good.setFaults([{ stage: 'connect', action: 'refuse' }])
  t.ok(
    await eventually(async () => (await metric(first, 'mxgate_journal_entries_written_total')) === 200, 5000),
    'all journaled',
  )
  const since = new Date(Date.now() - 600_000).toISOString()
  const pending = api(first, 'POST', '/api/replay', { backend: 'bad', since }).catch(() => null)
  // Kill as soon as the replay has put something into the spool.
  const msgs = () => fs.readdirSync(spoolDir).filter((f) => f.endsWith('.msg')).length
  for (let i = 0; i < 4000 && msgs() === 0; i++) await new Promise((r) => setTimeout(r, SPOOL_POLL_MS))
  first.proc.proc.kill('SIGKILL')
  await pending
  const marks = fs
    .readdirSync(path.join(spoolDir, 'journal'))
    .filter((f) => f.endsWith('.replayed'))
    .reduce((n, f) => n + fs.readFileSync(path.join(spoolDir, 'journal', f), 'utf8').split('\n').length - 1, 0)
  t.comment(`killed after ${msgs()} spool files and ${marks} of ${lost.length} replay marks`)

  await good.setFaults([])
  const second = await startNode(t, { backends: [bad, good], config, spoolDir })
  const rest = await cli(second, 'replay', '--backend', 'bad', '--since', '20m')
  t.equal(rest.code, 0, rest.stderr)
  t.ok(
    await eventually(() => [...countAt([good], lost).values()].every((n) => n >= 1), 30_000),
    'every message the bad backend lost is at the good one after the restart and a second replay',
  )
  t.equal(bad.received.length + bad.discarded.length, lost.length, 'none went back to the bad backend')
})

t.test('a full journal disk degrades the journal, and mail flows', async (t) => {
  const disk = await tinyDisk(t, '512k')
  if (disk.path === null) {
    t.plan(0, disk.why)
    return
  }
  const mx = await backend(t, { id: 'mx1' })
  const journalDir = path.join(disk.path, 'journal')
  fs.mkdirSync(journalDir)
  const node = await startNode(t, {
    backends: [mx],
    config: configDir(t, `[journal]\ndir = ${journalDir}\n`),
    spoolDir: tempDir(t, 'mxgate-journal-full-'),
  })
  const unfill = fillDisk(journalDir)
  const sent = await sendBatch(node, 'full', 20)
  t.equal(sent.length, 20, 'every sender got 250 with the journal disk full')
  t.ok(await eventually(() => mx.received.length === 20, 5000), 'and the backend has every message')
  t.ok(await eventually(async () => (await metric(node, 'mxgate_journal_degraded')) === 1, 5000), 'degraded')
  t.ok((await metric(node, 'mxgate_journal_write_errors_total')) >= 1, 'write errors counted')
  // Records are written in batches after each 250: the last batch may still be failing when the others have.
  await eventually(async () => (await metric(node, 'mxgate_journal_dropped_total')) >= 20, 5000)
  t.equal(await metric(node, 'mxgate_journal_dropped_total'), 20, 'the 20 messages are not journaled')
  const ready = await api(node, 'GET', '/readyz')
  t.equal(ready.status, 200, '/readyz is not affected')
  t.equal(
    node.proc.logs.filter((l) => String(l.msg).startsWith('journal degraded')).length,
    1,
    'logged once for the episode',
  )

  unfill()
  const after = await sendBatch(node, 'after', 5)
  t.equal(after.length, 5)
  t.ok(await eventually(async () => (await metric(node, 'mxgate_journal_degraded')) === 0, 5000), 'writes again')
  const ls = await cli(node, 'journal', 'ls', '--backend', 'mx1', '--since', '10m', '--json')
  t.equal(ls.code, 0, ls.stderr)
  const entries = (JSON.parse(ls.stdout) as { entries: { messageId: string }[] }).entries
  t.same(
    entries.map((e) => e.messageId).sort(),
    after.map((id) => `<${id}>`).sort(),
    'what came after the disk had room again is journaled',
  )
})

t.test(
  'a replay into a full spool disk stops, says so, and a second replay after room is made sends the rest',
  async (t) => {
    const disk = await tinyDisk(t, '1m')
    if (disk.path === null) {
      t.plan(0, disk.why)
      return
    }
    const bad = await backend(t, { id: 'bad', discardShare: 1 })
    const good = await backend(t, { id: 'good' })
    const spoolDir = path.join(disk.path, 'spool')
    fs.mkdirSync(spoolDir)
    const node = await startNode(t, {
      backends: [bad, good],
      // The journal on the big disk, the spool on the tiny one; no free-space margin, so the disk itself refuses.
      config: configDir(t, `[journal]\ndir = ${tempDir(t, 'mxgate-journal-dir-')}\n[spool]\nmin_free_disk = 0\n`),
      spoolDir,
    })
    const sent = await sendBatch(node, 'fullspool', 40)
    t.equal(sent.length, 40)
    const lost = bad.discarded.map((m) => m.messageId!)
    t.ok(lost.length > 0, `the bad backend lost ${lost.length}`)
    t.ok(
      await eventually(async () => (await metric(node, 'mxgate_journal_entries_written_total')) === 40, 5000),
      'all journaled',
    )
    const unfill = fillDisk(spoolDir)
    const stopped = await cli(node, 'replay', '--backend', 'bad', '--since', '10m')
    t.equal(stopped.code, 1, 'exit 1: the replay did not finish')
    t.match(stopped.stdout, /replay stopped early: .*replay the window again to send the rest/)
    unfill()
    const rest = await cli(node, 'replay', '--backend', 'bad', '--since', '10m')
    t.equal(rest.code, 0, rest.stderr)
    t.ok(
      await eventually(() => [...countAt([good], lost).values()].every((n) => n >= 1), 20_000),
      'every lost message reaches the good backend',
    )
  },
)
