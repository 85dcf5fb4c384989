import t from 'tap'
import { median, percentile, ratio, spread } from '../src/bench/stats'

t.test('percentile is nearest-rank: p50 and p99 are latencies some message really had', async (t) => {
  const sorted = Float64Array.from({ length: 100 }, (_, i) => i + 1) // 1..100
  t.equal(percentile(sorted, 50), 50)
  t.equal(percentile(sorted, 99), 99)
  t.equal(percentile(sorted, 100), 100)
  t.equal(percentile(sorted, 0), 1, 'p0 is the smallest value')
  t.equal(percentile([7], 99), 7, 'one value is every percentile')
  t.equal(percentile([1, 2, 3], 50), 2)
  t.equal(percentile([1, 2, 3, 4], 50), 2, 'nearest rank does not interpolate')
})

t.test('percentile of no values is NaN and a p outside 0..100 is refused', async (t) => {
  t.ok(Number.isNaN(percentile([], 50)))
  t.throws(() => percentile([1], 101), RangeError)
  t.throws(() => percentile([1], -1), RangeError)
})

t.test('median takes the middle value, or the mean of the middle two, and ignores NaN', async (t) => {
  t.equal(median([3, 1, 2]), 2)
  t.equal(median([4, 1, 3, 2]), 2.5)
  t.equal(median([5, Number.NaN, 1]), 3)
  t.ok(Number.isNaN(median([])))
})

t.test('spread reports median and min–max over the reps that measured something', async (t) => {
  t.same(spread([760, 700, 820, Number.NaN]), { median: 760, min: 700, max: 820, n: 3 })
  const none = spread([Number.NaN])
  t.equal(none.n, 0)
  t.ok(Number.isNaN(none.median))
})

t.test('ratio to a missing or zero row is not a number', async (t) => {
  t.equal(ratio(380, 760), 0.5)
  t.ok(Number.isNaN(ratio(380, 0)))
  t.ok(Number.isNaN(ratio(Number.NaN, 760)))
})
