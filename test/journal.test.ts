// The replay journal on real files: batches, the index and its recovery, retention, a full disk, and replay into a
// real spool (marks, --again, dry run).
import fs from 'node:fs'
import path from 'node:path'
import t, { type Test } from 'tap'
import { encodeRecord, messageIdOf } from '../src/journal/format'
import { Journal } from '../src/journal/journal'
import { byteLimit, eatsReserve, segmentsToRemove } from '../src/journal/retention'
import { listSegments } from '../src/journal/segments'
import type { JournalWriterOptions } from '../src/journal/writer'
import { fillDisk, tinyDisk } from './helpers/tiny-disk'
import { message, openStore, sinkLogger, tempDir } from './spool-helpers'

const HOUR = 3_600_000

function settings(dir: string, over: Partial<JournalWriterOptions> = {}): JournalWriterOptions {
  return {
    enabled: true,
    dir,
    retentionMs: 48 * HOUR,
    maxBytes: 10 * 1024 ** 3,
    diskShare: 0.9,
    batchMs: 5,
    fsync: true,
    ...over,
  }
}

async function openJournal(t: Test, over: Partial<JournalWriterOptions> = {}) {
  const dir = path.join(tempDir(t), 'journal')
  const { log, lines } = sinkLogger()
  const j = new Journal(settings(dir, over), log)
  await j.open()
  t.teardown(() => j.close())
  return { j, dir, lines }
}

function body(n: number, extra = ''): Buffer {
  return Buffer.from(`Message-ID: <m${n}@test>\r\nSubject: ${n}\r\n\r\nhello ${n}${extra}\r\n`)
}

const ALL = { since: 0, until: Number.MAX_SAFE_INTEGER }

t.test('keeps each message with the backend that took which recipients, found again by backend and time', async (t) => {
  const { j } = await openJournal(t)
  const m1 = message(body(1), ['a@example.com', 'b@example.com'])
  const m2 = message(body(2), ['c@example.com'])
  j.delivered(m1, [
    { backendId: 'mx1', recipients: ['a@example.com'] },
    { backendId: 'mx2', recipients: ['b@example.com'] },
  ])
  j.delivered(m2, [{ backendId: 'mx1', recipients: ['c@example.com'] }])
  t.equal(j.counters().written, 0, 'record() only queues: nothing is written on the reply path')
  await j.writer.flush()
  t.equal(j.counters().written, 2)

  const mx1 = await j.list({ backend: 'mx1', ...ALL })
  t.same(
    mx1.map((e) => [e.line.messageId, e.rcpts]),
    [
      ['<m1@test>', ['a@example.com']],
      ['<m2@test>', ['c@example.com']],
    ],
    'mx1 took a@ of the first message and c@ of the second',
  )
  const mx2 = await j.list({ backend: 'mx2', ...ALL })
  t.same(
    mx2.map((e) => e.rcpts),
    [['b@example.com']],
    'a split message is listed for each backend with its own recipients',
  )
  t.same(await j.reader.body(mx2[0]!), m1.body, 'the body comes back byte for byte')
  t.equal(mx2[0]!.line.from, 'sender@example.org')

  const at = mx1[0]!.line.at
  t.same(await j.list({ backend: 'mx1', since: at + HOUR, until: at + 2 * HOUR }), [], 'nothing outside the window')
  t.same(await j.list({ backend: 'mx3', ...ALL }), [], 'nothing for a backend that took nothing')
})

t.test('one write per batch: many messages queued together land in one segment', async (t) => {
  const { j, dir } = await openJournal(t, { batchMs: 50 })
  for (let i = 0; i < 200; i++) j.delivered(message(body(i)), [{ backendId: 'mx1', recipients: ['a@example.com'] }])
  await j.writer.flush()
  const segs = await listSegments(dir)
  t.equal(segs.length, 1, 'one segment')
  const idx = fs.readFileSync(segs[0]!.index, 'utf8').trim().split('\n')
  t.equal(idx.length, 200, 'one index line per message')
  t.equal((await j.list({ backend: 'mx1', ...ALL })).length, 200)
})

t.test(
  'records the index lost (a crash after the fsync) are found from the data file; a torn tail is left out',
  async (t) => {
    const { j, dir } = await openJournal(t)
    for (let i = 0; i < 3; i++) j.delivered(message(body(i)), [{ backendId: 'mx1', recipients: ['a@example.com'] }])
    await j.writer.flush()
    await j.close()
    const [seg] = await listSegments(dir)
    // Keep only the first index line, and tear a fourth record in half.
    const lines = fs.readFileSync(seg!.index, 'utf8').split('\n')
    fs.writeFileSync(seg!.index, `${lines[0]}\n{"torn`)
    const [head, b] = encodeRecord(
      { v: 1, at: Date.now(), receivedAt: 0, trace: 'x', from: '', deliveries: [], messageId: null, size: 100 },
      Buffer.alloc(100, 0x61),
    )
    fs.appendFileSync(seg!.data, Buffer.concat([head, b]).subarray(0, 60))
    const again = new Journal(settings(dir), sinkLogger().log)
    const found = await again.reader.find({ backend: 'mx1', ...ALL })
    t.same(
      found.map((e) => e.line.messageId),
      ['<m0@test>', '<m1@test>', '<m2@test>'],
      'all three complete records, none of the torn one',
    )
    t.same(await again.reader.body(found[2]!), body(2))
  },
)

t.test('retention removes the oldest segments first: past the age limit, then until the rest fit', async (t) => {
  const segs = [
    { base: 'a', bytes: 100, mtimeMs: 1000 },
    { base: 'b', bytes: 100, mtimeMs: 5000 },
    { base: 'c', bytes: 100, mtimeMs: 9000 },
    { base: 'd', bytes: 100, mtimeMs: 9500 },
  ]
  t.same(segmentsToRemove(segs, 6000, 1e9, 10_000, new Set()), ['a'], 'age: only what is older than retention')
  t.same(segmentsToRemove(segs, 1e9, 250, 10_000, new Set()), ['a', 'b'], 'size: oldest first until it fits')
  t.same(segmentsToRemove(segs, 1, 0, 10_000, new Set(['d'])), ['a', 'b', 'c'], 'never the segment being written')
  t.equal(byteLimit({ maxAgeMs: 0, maxBytes: 10_000, diskShare: 0.25 }, 1000, 3000), 1000, 'a share of free + own')
  t.equal(byteLimit({ maxAgeMs: 0, maxBytes: 500, diskShare: 0.25 }, 1000, 3000), 500, 'or max_size if smaller')
  const reserved = { maxAgeMs: 0, maxBytes: 10_000, diskShare: 0.9, reserveBytes: 1000 }
  t.equal(byteLimit(reserved, 1000, 2500), 1500, "or what leaves twice the spool's min_free_disk free")
  t.equal(byteLimit(reserved, 500, 1000), 0, 'nothing when the disk is already inside the reserve')
  t.equal(eatsReserve(reserved, 2500, 400), false, 'a batch that leaves twice the reserve free may be written')
  t.equal(eatsReserve(reserved, 2500, 600), true, 'one that would not is not')
})

t.test(
  'retention on disk: small segments, a size limit, the oldest go first and replay no longer finds them',
  async (t) => {
    const { j, dir } = await openJournal(t, { segmentBytes: 2000, maxBytes: 5000 })
    for (let i = 0; i < 40; i++) {
      j.delivered(message(body(i, 'x'.repeat(400))), [{ backendId: 'mx1', recipients: ['a@example.com'] }])
      await j.writer.flush() // one batch each: segments rotate by size
    }
    await j.writer.prune()
    const segs = await listSegments(dir)
    const total = segs.reduce((n, s) => n + s.bytes, 0)
    t.ok(total <= 5000 + 2500, `the journal is about its limit (${total} bytes in ${segs.length} segments)`)
    const kept = (await j.list({ backend: 'mx1', ...ALL })).map((e) => Number(/m(\d+)@/.exec(e.line.messageId!)![1]))
    t.ok(kept.length > 0 && kept.length < 40, `some were removed (${kept.length} kept)`)
    t.same(
      kept,
      Array.from({ length: kept.length }, (_, i) => 40 - kept.length + i),
      'what is kept is the newest, without gaps',
    )
    t.ok(j.counters().bytes > 0)
    t.ok(j.counters().oldestAt !== null)

    const aged = await openJournal(t, { retentionMs: 60_000 })
    aged.j.delivered(message(body(1)), [{ backendId: 'mx1', recipients: ['a@example.com'] }])
    await aged.j.writer.flush()
    await aged.j.close() // the segment is no longer being written
    const late = new Journal(settings(aged.dir, { retentionMs: 60_000 }), sinkLogger().log)
    await late.writer.prune(Date.now() + 2 * 60_000)
    t.same(await listSegments(aged.dir), [], 'a segment older than retention is removed')
  },
)

t.test('a full disk degrades the journal (logged once, counted) and never throws into the mail path', async (t) => {
  const disk = await tinyDisk(t, '256k')
  if (disk.path === null) {
    t.plan(0, disk.why)
    return
  }
  const dir = path.join(disk.path, 'journal')
  const { log, lines } = sinkLogger()
  const j = new Journal(settings(dir), log)
  await j.open()
  t.teardown(() => j.close())
  const unfill = fillDisk(dir)
  for (let i = 0; i < 5; i++) {
    t.doesNotThrow(() =>
      j.delivered(message(body(i, 'y'.repeat(8000))), [{ backendId: 'mx1', recipients: ['a@example.com'] }]),
    )
    await j.writer.flush()
  }
  const c = j.counters()
  t.ok(c.writeErrors >= 1, `write errors counted (${c.writeErrors})`)
  t.equal(c.dropped, 5, 'the five messages are counted as not journaled')
  t.match(c.degraded, /ENOSPC/)
  t.ok((await listSegments(dir)).length <= 1, 'failed batches leave no pile of empty segments behind')
  const said = lines.filter((l) => String(l.msg).startsWith('journal degraded'))
  t.equal(said.length, 1, 'logged once for the episode')

  unfill()
  j.delivered(message(body(9)), [{ backendId: 'mx1', recipients: ['a@example.com'] }])
  await j.writer.flush()
  t.equal(j.counters().degraded, null, 'writes again once there is room')
  t.ok(lines.some((l) => l.msg === 'journal writes again'))
  const found = await j.list({ backend: 'mx1', ...ALL })
  t.same(
    found.map((e) => e.line.messageId),
    ['<m9@test>'],
    'what was written after the disk had room is there; nothing torn is listed',
  )
})

t.test('a disabled journal writes nothing', async (t) => {
  const { j, dir } = await openJournal(t, { enabled: false })
  j.delivered(message(body(1)), [{ backendId: 'mx1', recipients: ['a@example.com'] }])
  await j.writer.flush()
  t.notOk(fs.existsSync(dir), 'not even its directory')
})

t.test(
  'replay puts a backend window into the spool, never for that backend; once per entry unless again',
  async (t) => {
    const { j } = await openJournal(t)
    const { store } = await openStore(tempDir(t))
    t.teardown(() => store.close())
    j.delivered(message(body(1), ['a@example.com', 'b@example.com']), [
      { backendId: 'bad', recipients: ['a@example.com'] },
      { backendId: 'good', recipients: ['b@example.com'] },
    ])
    j.delivered(message(body(2)), [{ backendId: 'bad', recipients: ['a@example.com'] }])
    j.delivered(message(body(3)), [{ backendId: 'good', recipients: ['a@example.com'] }])
    const req = { backend: 'bad', ...ALL, dryRun: false, again: false }

    const dry = await j.replay({ ...req, dryRun: true }, store)
    t.match(dry, { messages: 2, skipped: 0, error: null }, 'a dry run counts')
    t.equal(dry.bytes, body(1).length + body(2).length, 'and sums the bytes')
    t.equal(store.list().length, 0, 'but writes nothing')

    const first = await j.replay(req, store)
    t.match(first, { messages: 2, skipped: 0, error: null })
    const spooled = store.list().sort((a, b) => a.size - b.size)
    t.equal(spooled.length, 2)
    t.same(
      spooled.map((e) => [e.to, e.pending, e.avoid]),
      [
        [['a@example.com'], ['a@example.com'], ['bad']],
        [['a@example.com'], ['a@example.com'], ['bad']],
      ],
      'only the recipients the bad backend took, and never to it',
    )
    const bodies = await Promise.all(spooled.map(async (e) => (await store.readBody(e.id)).toString()))
    t.same(bodies.sort(), [body(1).toString(), body(2).toString()], 'the bodies come back byte for byte')
    t.equal(j.counters().replayedMessages, 2)

    const second = await j.replay(req, store)
    t.match(second, { messages: 0, skipped: 2 }, 'a second replay of the window sends nothing twice')
    t.equal(store.list().length, 2)
    const listed = await j.list({ backend: 'bad', ...ALL })
    t.same(
      listed.map((e) => e.replayed),
      [true, true],
      'journal ls shows them as replayed',
    )
    t.match(await j.replay({ ...req, again: true }, store), { messages: 2, skipped: 0 }, '--again sends them again')
    t.equal(store.list().length, 4)
  },
)

t.test('replay stops cleanly when the spool refuses, and a second replay sends the rest', async (t) => {
  const { j } = await openJournal(t)
  const { store } = await openStore(tempDir(t), { maxMessages: 2 })
  t.teardown(() => store.close())
  for (let i = 0; i < 3; i++) j.delivered(message(body(i)), [{ backendId: 'bad', recipients: ['a@example.com'] }])
  const req = { backend: 'bad', ...ALL, dryRun: false, again: false }
  const r = await j.replay(req, store)
  t.equal(r.messages, 2)
  t.match(r.error, /replay the window again to send the rest/)
  for (const e of store.list()) await store.remove(e.id)
  const rest = await j.replay(req, store)
  t.match(rest, { messages: 1, skipped: 2, error: null }, 'only the one the spool refused')
})

t.test('Message-ID is read from the header block only', async (t) => {
  t.equal(messageIdOf(Buffer.from('Subject: x\r\nMessage-Id:\r\n <a@b>\r\n\r\nbody')), '<a@b>', 'folded')
  t.equal(messageIdOf(Buffer.from('Subject: x\r\n\r\nMessage-ID: <not@header>\r\n')), null, 'not from the body')
})
