// tuning.ts replaces haraka-utils' indexOfLF (Haraka's line splitter) with a native search: it must give the same
// answer as the original for every buffer and limit, or lines (and so DATA's end) would be cut elsewhere.
import fc from 'fast-check'
import t from 'tap'
import { indexOfLF } from '../../src/haraka/tuning'
import { holds } from './check'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const harakaUtils = require('haraka-utils') as { indexOfLF(buf: Buffer, maxlength?: number): number }
const original = harakaUtils.indexOfLF

t.test('the native indexOfLF answers as haraka-utils’ own for every buffer and limit', async (t) => {
  const bytes = fc.array(fc.oneof(fc.constant(0x0a), fc.constant(0x0d), fc.integer({ min: 0, max: 255 })), {
    maxLength: 64,
  })
  const limit = fc.option(fc.integer({ min: 0, max: 70 }), { nil: undefined })
  holds(
    t,
    __filename,
    fc.property(bytes, limit, (b, max) => {
      const buf = Buffer.from(b)
      return indexOfLF(buf, max) === original(buf, max)
    }),
    2000,
  )
  t.not(indexOfLF, original, 'the original was not already replaced in this process')
})
