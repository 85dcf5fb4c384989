import t from 'tap'
import { parseBenchArgs, parseLoadArgs, parseSize, ROW_IDS, sizeLabel } from '../src/bench/args'
import { BenchError } from '../src/bench/errors'

t.test('sizes read as KiB and label back the same way', async (t) => {
  t.equal(parseSize('5k'), 5120)
  t.equal(parseSize('100K'), 102400)
  t.equal(parseSize('1m'), 1048576)
  t.equal(parseSize('800'), 800)
  t.equal(sizeLabel(5120), '5k')
  t.equal(sizeLabel(102400), '100k')
  t.equal(sizeLabel(800), '800b')
})

t.test('a size that is unreadable or too small for the headers is refused with a typed error', async (t) => {
  t.throws(() => parseSize('five'), { code: 'EBENCHARGS', message: /--size: cannot read "five"/ })
  t.throws(() => parseSize('100'), { code: 'EBENCHARGS', message: /below 200 bytes/ })
})

t.test('bench defaults: both sizes, 20 sessions, 3 reps with a warm-up, every row', async (t) => {
  const o = parseBenchArgs([])
  t.same(o.sizes, [5120, 102400])
  t.equal(o.concurrency, 20)
  t.equal(o.reps, 3)
  t.equal(o.warmup, true)
  t.same(o.rows, [...ROW_IDS])
  t.equal(o.outDir, 'bench/results')
  t.equal(o.install, true)
  t.equal(o.quick, false)
})

t.test('--quick means one rep and shorter runs; explicit options still win', async (t) => {
  const q = parseBenchArgs(['--quick'])
  t.equal(q.reps, 1)
  t.ok(q.timeLimitMs < parseBenchArgs([]).timeLimitMs)
  t.ok(q.count < parseBenchArgs([]).count)
  const r = parseBenchArgs([
    '--quick',
    '--reps',
    '5',
    '--time-limit',
    '2.5',
    '--size',
    '5k',
    '--rows',
    'direct,postfix',
  ])
  t.equal(r.reps, 5)
  t.equal(r.timeLimitMs, 2500)
  t.same(r.sizes, [5120])
  t.same(r.rows, ['direct', 'postfix'])
})

t.test('bad bench options name the option and what is allowed', async (t) => {
  t.throws(() => parseBenchArgs(['--reps', '0']), { code: 'EBENCHARGS', message: /--reps: expected a whole number/ })
  t.throws(() => parseBenchArgs(['--rows', 'direct,exim']), { message: /unknown row "exim"; known rows: direct/ })
  t.throws(() => parseBenchArgs(['--time-limit=0']), { message: /--time-limit: expected seconds/ })
  const err = t.throws(() => parseBenchArgs(['--frobnicate']))
  t.ok(err instanceof BenchError, 'an unknown option is a BenchError too')
})

t.test('load generator options: target, size, concurrency, count and time cap', async (t) => {
  const o = parseLoadArgs([
    '--port',
    '2525',
    '--size',
    '100k',
    '--concurrency',
    '5',
    '--count',
    '50',
    '--time-limit',
    '3',
  ])
  t.same(o, { host: '127.0.0.1', port: 2525, sizes: [102400], concurrency: 5, count: 50, timeLimitMs: 3000 })
  t.throws(() => parseLoadArgs(['--port', '70000']), { code: 'EBENCHARGS', message: /--port/ })
})
