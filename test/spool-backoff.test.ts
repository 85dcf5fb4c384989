import t from 'tap'
import { nextAttemptDelay } from '../src/spool/backoff'
import { SpoolConfigError } from '../src/spool/errors'

const opts = { firstMs: 60_000, maxMs: 3_600_000, jitter: 0 }

t.test('without jitter the delay doubles from firstMs and stops at maxMs', async (t) => {
  t.same(
    [1, 2, 3, 4, 5, 6, 7, 8].map((n) => nextAttemptDelay(n, opts)),
    [60_000, 120_000, 240_000, 480_000, 960_000, 1_920_000, 3_600_000, 3_600_000],
  )
  t.equal(nextAttemptDelay(10_000, opts), 3_600_000, 'a huge attempt count does not overflow')
  t.equal(nextAttemptDelay(0, opts), 60_000, 'attempt numbers below 1 count as the first')
})

t.test('full jitter spreads the delay over [0, ceiling]; partial jitter over [ceiling*(1-j), ceiling]', async (t) => {
  const full = { ...opts, jitter: 1 }
  t.equal(
    nextAttemptDelay(3, full, () => 0),
    0,
  )
  t.equal(
    nextAttemptDelay(3, full, () => 1),
    240_000,
  )
  t.equal(
    nextAttemptDelay(3, full, () => 0.5),
    120_000,
  )
  const half = { ...opts, jitter: 0.5 }
  t.equal(
    nextAttemptDelay(3, half, () => 0),
    120_000,
  )
  t.equal(
    nextAttemptDelay(3, half, () => 1),
    240_000,
  )
  for (let i = 0; i < 200; i++) {
    const attempt = 1 + (i % 12)
    const ceiling = Math.min(opts.maxMs, opts.firstMs * 2 ** (attempt - 1))
    const d = nextAttemptDelay(attempt, { ...opts, jitter: 0.3 })
    if (d < ceiling * 0.7 || d > ceiling) t.fail(`attempt ${attempt}: ${d} outside [${ceiling * 0.7}, ${ceiling}]`)
  }
  t.equal(
    nextAttemptDelay(20, full, () => 1),
    opts.maxMs,
    'never above maxMs',
  )
})

t.test('a random source outside [0,1] is clamped', async (t) => {
  t.equal(
    nextAttemptDelay(1, { ...opts, jitter: 1 }, () => 7),
    60_000,
  )
  t.equal(
    nextAttemptDelay(1, { ...opts, jitter: 1 }, () => -1),
    0,
  )
})

t.test('bad options are a SpoolConfigError naming the option', async (t) => {
  t.throws(() => nextAttemptDelay(1, { ...opts, jitter: 2 }), SpoolConfigError)
  t.throws(() => nextAttemptDelay(1, { ...opts, jitter: Number.NaN }), { code: 'ESPOOLCONFIG', key: 'backoff.jitter' })
  t.throws(() => nextAttemptDelay(1, { ...opts, maxMs: 1 }), { code: 'ESPOOLCONFIG', key: 'backoff.maxMs' })
  t.throws(() => nextAttemptDelay(1, { ...opts, firstMs: -1 }), { code: 'ESPOOLCONFIG', key: 'backoff.firstMs' })
})
