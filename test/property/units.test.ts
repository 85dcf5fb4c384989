// Properties of the config units (README "Configuration reference"): durations `500ms 30s 5m 2h 5d` (bare number =
// seconds) and sizes `65536 512k 50MB 10GB` (binary multiples) read back what was written, and junk is null, never
// an exception or a number that is not a number.
import fc from 'fast-check'
import t from 'tap'
import { parseDuration, parseSize } from '../../src/config/units'
import { holds } from './check'

const DURATION: [string, number][] = [
  ['ms', 1],
  ['s', 1000],
  ['m', 60_000],
  ['h', 3_600_000],
  ['d', 86_400_000],
  ['', 1000],
]
const SIZE: [string, number][] = [
  ['', 1],
  ['b', 1],
  ['k', 1024],
  ['kb', 1024],
  ['m', 1024 ** 2],
  ['mb', 1024 ** 2],
  ['g', 1024 ** 3],
  ['gb', 1024 ** 3],
]

/** A unit as an operator might type it: any case, optional space before it, blanks around the value. */
const written = (units: [string, number][]) =>
  fc
    .tuple(
      fc.integer({ min: 0, max: 1_000_000 }),
      fc.constantFrom(...units),
      fc.array(fc.boolean(), { maxLength: 2 }),
      fc.constantFrom('', ' '),
      fc.constantFrom('', ' ', '\t'),
    )
    .map(([n, [unit, mult], upper, gap, pad]) => {
      const u = [...unit].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('')
      return { text: `${pad}${n}${unit === '' ? '' : gap}${u}${pad}`, value: n * mult }
    })

t.test('parseDuration reads every written duration back as its milliseconds', async (t) => {
  holds(
    t,
    __filename,
    fc.property(written(DURATION), ({ text, value }) => parseDuration(text) === value),
  )
})

t.test('parseSize reads every written size back as its bytes', async (t) => {
  holds(
    t,
    __filename,
    fc.property(written(SIZE), ({ text, value }) => parseSize(text) === value),
  )
})

/** Junk and near-misses: any string, numbers with odd forms, overlong digit runs, unknown units. */
const junk = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: fc.constantFrom(...'0123456789.-+eE xXkKmMgGbBsShHdD_,'), maxLength: 20 }),
  fc.integer({ min: 300, max: 1000 }).map((n) => '9'.repeat(n)),
  fc.constantFrom('1e3', '-5s', '+5s', '0x10', '5 s s', '.5s', '5.s', 'Infinity', 'NaN', '5w', '5y', '5tb', '1_000'),
)

t.test('parseDuration and parseSize answer junk with null or a finite whole number, never an exception', async (t) => {
  holds(
    t,
    __filename,
    fc.property(junk, (s) =>
      [parseDuration(s), parseSize(s)].every((v) => v === null || (Number.isSafeInteger(v) && v >= 0)),
    ),
    1000,
  )
})

t.test('a duration or size too large for a number is refused, not read as Infinity', async (t) => {
  const huge = '9'.repeat(400)
  t.equal(parseDuration(huge), null)
  t.equal(parseDuration(`${huge}ms`), null)
  t.equal(parseSize(huge), null)
  t.equal(parseSize(`${huge}GB`), null)
})
