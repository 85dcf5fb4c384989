import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { HOST_TAG } from '../src/spool/disk'
import { SpoolCorruptError, SpoolFullError, SpoolNotFoundError, SpoolStateError } from '../src/spool/errors'
import { SpoolStore } from '../src/spool/store'
import { deadPid, filesIn, message, openStore, sinkLogger, tempDir } from './spool-helpers'

t.test('write puts one file in the spool dir: preamble, JSON envelope, body bytes exactly as given', async (t) => {
  const dir = tempDir(t)
  const { store } = await openStore(dir)
  // Wire form: CRLF, a dot-stuffed line, no terminating dot. Stored as is.
  const body = Buffer.from('Subject: x\r\n\r\n..leading dot\r\nbin\xff\r\n', 'latin1')
  const entry = await store.write(message(body, ['a@example.com', 'b@example.com']), {
    pending: ['b@example.com'],
    trace: 'conn-1',
  })
  t.same(filesIn(dir), [`${entry.id}.msg`])
  const file = fs.readFileSync(path.join(dir, `${entry.id}.msg`))
  const nl = file.indexOf(0x0a)
  const pre = file.subarray(0, nl).toString()
  const m = /^MXSPOOL 1 (\d+) (\d+) ([0-9a-f]{8}) ([0-9a-f]{8})$/.exec(pre)
  t.ok(m, `preamble ${pre}`)
  const headerLen = Number(m?.[1])
  t.equal(Number(m?.[2]), body.length, 'preamble gives the body length')
  const header = JSON.parse(file.subarray(nl + 1, nl + 1 + headerLen).toString())
  t.same(header, entry, 'the JSON header is the entry')
  t.equal(file[nl + 1 + headerLen], 0x0a, 'header ends with LF')
  t.ok(file.subarray(nl + 2 + headerLen).equals(body), 'body bytes follow unchanged')
  t.match(entry, {
    version: 1,
    from: 'sender@example.org',
    to: ['a@example.com', 'b@example.com'],
    pending: ['b@example.com'],
    done: ['a@example.com'],
    bounced: [],
    attempts: 0,
    held: false,
    trace: 'conn-1',
    size: body.length,
  })
  t.ok((await store.readBody(entry.id)).equals(body), 'readBody returns the same bytes')
  t.equal(fs.statSync(path.join(dir, `${entry.id}.msg`)).mode & 0o777, 0o640, 'not world-readable')
})

t.test('open() after a crash discards temp files of dead writers and resumes complete files', async (t) => {
  const dir = tempDir(t)
  const first = await openStore(dir)
  const a = await first.store.write(message('Subject: a\r\n\r\na\r\n'))
  const b = await first.store.write(message('Subject: b\r\n\r\nb\r\n'))
  // What a crash mid-write leaves: a temp file from a writer that is gone, and one from before the last boot.
  const dead = path.join(dir, `.tmp-${HOST_TAG}-${deadPid()}-abc`)
  fs.writeFileSync(dead, 'MXSPOOL 1 half a message')
  const old = path.join(dir, `.tmp-${HOST_TAG}-${process.ppid}-def`)
  fs.writeFileSync(old, 'older than this boot')
  fs.utimesSync(old, new Date('2000-01-01'), new Date('2000-01-01'))
  // A temp file of a live writer (this process) must survive: it may be a write in progress.
  const live = path.join(dir, `.tmp-${HOST_TAG}-${process.pid}-ghi`)
  fs.writeFileSync(live, 'in progress')

  const second = await openStore(dir)
  t.match(second.opened, { resumed: 2, discardedTemp: 2, quarantined: 0 })
  t.notOk(fs.existsSync(dead), 'dead writer temp removed')
  t.notOk(fs.existsSync(old), 'pre-boot temp removed')
  t.ok(fs.existsSync(live), 'live writer temp kept')
  t.same(
    second.store
      .list()
      .map((e) => e.id)
      .sort(),
    [a.id, b.id].sort(),
  )
  t.same(second.store.get(a.id), a)
  t.equal(second.store.stats().bytes, a.size + b.size)
})

t.test('50 concurrent writes are all durable and share directory fsyncs (group commit)', async (t) => {
  const dir = tempDir(t)
  // An event log of the real renames and directory fsyncs, and of each write's answer: their order is the proof.
  const events: string[] = []
  const { store } = await openStore(dir, {
    trace: (event, file) => events.push(event === 'renamed' ? `renamed ${path.basename(file, '.msg')}` : event),
  })
  const entries = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      store.write(message(`Subject: ${i}\r\n\r\n`)).then((e) => {
        events.push(`resolved ${e.id}`)
        return e
      }),
    ),
  )
  t.equal(new Set(entries.map((e) => e.id)).size, 50, 'distinct ids')
  t.equal(store.fileSyncs, 50, 'each file got its own fsync')
  t.ok(store.dirSyncs >= 1 && store.dirSyncs < 50, `directory fsyncs (${store.dirSyncs}) fewer than writes (50)`)

  const syncs = events.filter((e) => e.startsWith('dirsync-'))
  t.equal(syncs.length, 2 * store.dirSyncs, 'every directory fsync began and ended')
  t.ok(
    syncs.every((e, i) => e === (i % 2 === 0 ? 'dirsync-begin' : 'dirsync-end')),
    'directory fsyncs never overlap',
  )
  // No 250 before its own fsync: the first directory fsync to begin after a write's rename must have ended before
  // that write resolved (a later one would end later still).
  const early = entries.flatMap((e) => {
    const renamed = events.indexOf(`renamed ${e.id}`)
    const resolved = events.indexOf(`resolved ${e.id}`)
    const began = renamed < 0 ? -1 : events.indexOf('dirsync-begin', renamed)
    const ended = began < 0 ? -1 : events.indexOf('dirsync-end', began)
    const ok = renamed >= 0 && began > renamed && ended > began && resolved > ended
    return ok ? [] : [`${e.id}: renamed @${renamed}, next dirsync @${began}-${ended}, resolved @${resolved}`]
  })
  t.same(early, [], 'each write resolved after a directory fsync that began after its own rename')
  const reopened = await openStore(dir)
  t.equal(reopened.opened.resumed, 50)
})

t.test('limits refuse a message with SpoolFullError naming the limit, and write nothing', async (t) => {
  t.test('maxMessages', async (t) => {
    const dir = tempDir(t)
    const { store } = await openStore(dir, { maxMessages: 2 })
    await store.write(message())
    await store.write(message())
    const err = await store.write(message()).catch((e: unknown) => e)
    t.ok(err instanceof SpoolFullError)
    t.match(err, { code: 'ESPOOLFULL', limit: 'maxMessages', message: /maxMessages/ })
    t.equal(filesIn(dir).length, 2)
    t.match(store.stats(), { messages: 2, full: true, reason: /limit 2/ })
  })
  t.test('maxBytes', async (t) => {
    const dir = tempDir(t)
    const { store } = await openStore(dir, { maxBytes: 100 })
    await store.write(message('x'.repeat(60)))
    t.match(await store.write(message('y'.repeat(60))).catch((e: unknown) => e), { limit: 'maxBytes' })
    t.equal(filesIn(dir).length, 1)
    t.match(
      store.stats(),
      { full: true, reason: /would pass the limit of 100/ },
      'full for /readyz while a message like the refused one would be refused again',
    )
    const first = store.list()[0]!
    await store.remove(first.id)
    t.equal(store.stats().full, false, 'ready once there is room for it')
    await store.write(message('z'.repeat(60)))
    t.equal(store.stats().full, false, 'a refusal is forgotten once it has room: only "nothing fits" counts then')
  })
  t.test('minFreeBytes', async (t) => {
    const dir = tempDir(t)
    const { store } = await openStore(dir, { minFreeBytes: Number.MAX_SAFE_INTEGER })
    t.match(await store.write(message()).catch((e: unknown) => e), {
      code: 'ESPOOLFULL',
      limit: 'minFreeBytes',
      message: /bytes free/,
    })
    t.same(filesIn(dir), [])
    t.match(store.stats(), { full: true, reason: /bytes free on the spool disk/ }, 'stats() says why, for /readyz')
  })
  t.test('concurrent writes cannot overshoot maxMessages', async (t) => {
    const dir = tempDir(t)
    const { store } = await openStore(dir, { maxMessages: 10 })
    const results = await Promise.allSettled(Array.from({ length: 30 }, () => store.write(message())))
    t.equal(results.filter((r) => r.status === 'fulfilled').length, 10)
    t.ok(results.every((r) => r.status === 'fulfilled' || r.reason instanceof SpoolFullError))
    t.equal(filesIn(dir).length, 10)
  })
})

t.test('update writes a durable envelope sidecar; the newest one wins after a restart', async (t) => {
  const dir = tempDir(t)
  const { store } = await openStore(dir)
  const body = Buffer.from('Subject: u\r\n\r\nbody\r\n')
  const e = await store.write(message(body, ['a@x.org', 'b@x.org']))
  const errors = Array.from({ length: 12 }, (_, i) => ({
    backendId: `b${i}`,
    stage: 'dot',
    message: `451 #${i}`,
    at: i,
  }))
  const u1 = await store.update(e.id, {
    attempts: 1,
    pending: ['b@x.org'],
    done: ['a@x.org'],
    lastErrors: errors,
    nextAttemptAt: 42,
  })
  t.equal(u1.lastErrors.length, 10, 'keeps the last 10 errors')
  t.equal(u1.lastErrors[0]?.backendId, 'b2')
  t.same(filesIn(dir), [`${e.id}.1.env`, `${e.id}.msg`])
  const u2 = await store.update(e.id, {
    attempts: 2,
    bounced: [{ rcpt: 'b@x.org', reply: '550 5.1.1 no such user' }],
    pending: [],
  })
  t.same(filesIn(dir), [`${e.id}.2.env`, `${e.id}.msg`], 'the older sidecar is gone')
  t.ok(Object.isFrozen(u2), 'entries are frozen: change them through update()')

  const reopened = await openStore(dir)
  t.same(reopened.store.get(e.id), u2, 'restart sees the last update')
  t.ok((await reopened.store.readBody(e.id)).equals(body), 'body unchanged')

  await reopened.store.remove(e.id)
  t.same(filesIn(dir), [], 'remove deletes message and sidecar')
  t.equal(reopened.store.get(e.id), undefined)
  await reopened.store.remove(e.id) // idempotent
  t.equal((await openStore(dir)).opened.resumed, 0, 'stays removed after a restart')
  await t.rejects(reopened.store.update(e.id, { attempts: 3 }), SpoolNotFoundError)
})

t.test('open() finishes interrupted updates and removes', async (t) => {
  const dir = tempDir(t)
  const { store } = await openStore(dir)
  const e = await store.write(message())
  await store.update(e.id, { attempts: 1 })
  const one = fs.readFileSync(path.join(dir, `${e.id}.1.env`))
  await store.update(e.id, { attempts: 2 })
  // Crash after the new sidecar was renamed in, before the old one was unlinked.
  fs.writeFileSync(path.join(dir, `${e.id}.1.env`), one)
  // Crash inside remove(): message file gone, sidecar still there.
  const gone = await store.write(message())
  await store.update(gone.id, { attempts: 5 })
  fs.unlinkSync(path.join(dir, `${gone.id}.msg`))

  const reopened = await openStore(dir)
  t.equal(reopened.store.get(e.id)?.attempts, 2, 'highest sequence wins')
  t.equal(reopened.store.get(gone.id), undefined)
  t.same(filesIn(dir), [`${e.id}.2.env`, `${e.id}.msg`], 'stale and orphan sidecars removed')
})

t.test('a corrupt file is quarantined and logged; the rest of the spool still opens', async (t) => {
  const dir = tempDir(t)
  const { store } = await openStore(dir)
  const good = await store.write(message())
  const flipped = await store.write(message())
  const truncated = await store.write(message('Subject: t\r\n\r\n'.padEnd(500, 'z')))
  const flip = path.join(dir, `${flipped.id}.msg`)
  const bytes = fs.readFileSync(flip)
  const at = bytes.indexOf('"from"') + 2 // inside the JSON header
  bytes[at] = (bytes[at] ?? 0) ^ 0x20
  fs.writeFileSync(flip, bytes)
  fs.truncateSync(path.join(dir, `${truncated.id}.msg`), 300)
  fs.writeFileSync(path.join(dir, 'zzzz-garbage.msg'), 'not a spool file at all\n')

  const reopened = await openStore(dir)
  t.match(reopened.opened, { resumed: 1, quarantined: 3 })
  t.same(
    reopened.store.list().map((e) => e.id),
    [good.id],
  )
  t.same(filesIn(dir), [`${good.id}.msg`])
  t.equal(fs.readdirSync(path.join(dir, 'quarantine')).length, 3, 'moved aside, not deleted')
  const logged = reopened.lines.filter((l) => l.msg === 'corrupt spool file moved to quarantine')
  t.equal(logged.length, 3)
  t.ok(
    logged.some((l) => /checksum/.test(String(l.reason))),
    'the reason names the check that failed',
  )
  t.ok(logged.some((l) => /truncated/.test(String(l.reason))))
})

t.test('readBody detects a damaged body by its checksum and quarantines the file', async (t) => {
  const dir = tempDir(t)
  const { store } = await openStore(dir)
  const e = await store.write(message('Subject: b\r\n\r\nimportant\r\n'))
  const file = path.join(dir, `${e.id}.msg`)
  const bytes = fs.readFileSync(file)
  bytes[bytes.length - 3] = 0x21
  fs.writeFileSync(file, bytes)
  await t.rejects(store.readBody(e.id), SpoolCorruptError)
  t.equal(store.get(e.id), undefined)
  t.equal(fs.readdirSync(path.join(dir, 'quarantine')).length, 1)
  await t.rejects(store.readBody('nope-0'), SpoolNotFoundError)
})

t.test('due() returns held-free, ready entries, oldest received first, up to the limit', async (t) => {
  const dir = tempDir(t)
  const { store } = await openStore(dir)
  const at = (receivedAt: number) => ({ ...message(), receivedAt })
  const late = await store.write(at(3000), { nextAttemptAt: 10 })
  const early = await store.write(at(1000), { nextAttemptAt: 10 })
  const middle = await store.write(at(2000), { nextAttemptAt: 10 })
  const future = await store.write(at(500), { nextAttemptAt: 99 })
  const held = await store.write(at(100), { nextAttemptAt: 10 })
  await store.update(held.id, { held: true })
  const finished = await store.write(at(200), { nextAttemptAt: 10, pending: [] })

  t.same(
    store.due(50, 10).map((e) => e.id),
    [early.id, middle.id, late.id],
  )
  t.same(
    store.due(50, 2).map((e) => e.id),
    [early.id, middle.id],
  )
  t.same(
    store.due(100, 10).map((e) => e.id),
    [future.id, early.id, middle.id, late.id],
  )
  t.notOk(store.due(1000, 10).some((e) => e.id === held.id || e.id === finished.id))
})

t.test('refresh() picks up writes, updates and removes made by another store on the same dir', async (t) => {
  const dir = tempDir(t)
  const a = (await openStore(dir)).store
  const b = (await openStore(dir)).store
  const e = await a.write(message())
  t.match(await b.refresh(), { added: 1, removed: 0, updated: 0 })
  await a.update(e.id, { attempts: 7 })
  t.match(await b.refresh(), { added: 0, removed: 0, updated: 1 })
  t.equal(b.get(e.id)?.attempts, 7)
  await a.remove(e.id)
  t.match(await b.refresh(), { added: 0, removed: 1, updated: 0 })
  t.equal(b.stats().messages, 0)
  t.equal(b.stats().bytes, 0)
})

t.test('using the store before open() is a SpoolStateError', async (t) => {
  const store = new SpoolStore(
    { dir: tempDir(t), maxMessages: 1, maxBytes: 1, minFreeBytes: 0, fsync: false },
    sinkLogger().log,
  )
  await t.rejects(store.write(message()), SpoolStateError)
  t.throws(() => store.due(0, 1), { code: 'ESPOOLSTATE' })
})
