// Properties of the RCPT rules in the README ("What happens to a message"): mxgate never hands a backend a mailbox
// that routes elsewhere, and takes every ordinary address of its own domains.
import fc from 'fast-check'
import t from 'tap'
import { dequoteLocalPart, judgeRecipient, type RecipientPolicy } from '../../src/inbound/recipient-policy'
import { holds } from './check'

const policy: RecipientPolicy = { domains: ['example.com', 'mail.example.org'], maxRecipients: 100 }

/** RFC 5322 atext without `%` and `!`, the two characters the README refuses as routes. */
const ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#$&'*+-/=?^_`{|}~"
const atom = fc.string({ unit: fc.constantFrom(...ATEXT), minLength: 1, maxLength: 12 })
const dotAtom = fc.array(atom, { minLength: 1, maxLength: 4 }).map((a) => a.join('.'))

/** One of our domains as a sender may write it: any letter case, sometimes with the root's trailing dot. */
const ourDomain = fc
  .tuple(fc.constantFrom(...policy.domains), fc.array(fc.boolean(), { maxLength: 20 }), fc.boolean())
  .map(([d, upper, dot]) => [...d].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('') + (dot ? '.' : ''))

/** Quoted-string content: any printable ASCII and some non-ASCII, including `"`, `\`, `%`, `!`, `@`. */
const content = fc.string({ unit: fc.constantFrom(...' !"#$%&()*+,-./:;<=>?@[\\]^_{|}~aZ09é'), maxLength: 20 })

/** RFC 5321 §4.1.2 Quoted-string: `"` + qtext or quoted-pairs + `"`. */
function quote(s: string): string {
  return `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`
}

const rcpt = (user: string, host: string) => ({ user, host, original: `<${user}@${host}>` })

t.test('accepts every plain dot-atom local part at each of our domains', async (t) => {
  holds(
    t,
    __filename,
    fc.property(dotAtom, ourDomain, fc.integer({ min: 1, max: 100 }), (user, host, count) => {
      return judgeRecipient(rcpt(user, host), count, policy) === null
    }),
  )
})

t.test('dequoteLocalPart undoes RFC 5321 quoting of any content', async (t) => {
  holds(
    t,
    __filename,
    fc.property(content, (s) => dequoteLocalPart(quote(s)) === s),
  )
})

t.test('never accepts a quoted local part whose content holds %, ! or @; refuses it with 550 5.7.1', async (t) => {
  holds(
    t,
    __filename,
    fc.property(content, ourDomain, (s, host) => {
      const verdict = judgeRecipient(rcpt(quote(s), host), 1, policy)
      if (!/[%!@]/.test(s)) return verdict === null
      return verdict?.code === 550 && verdict.enhanced === '5.7.1'
    }),
  )
})

t.test('never accepts any local part, quoted or not, that holds %, ! or @ before or after dequoting', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.string({ maxLength: 30 }), ourDomain, (user, host) => {
      const verdict = judgeRecipient(rcpt(user, host.toLowerCase()), 1, policy)
      return verdict !== null || !/[%!@]/.test(user + dequoteLocalPart(user))
    }),
    500,
  )
})

t.test('refuses every source route with 550 5.7.1, whatever the mailbox after it', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.array(fc.domain(), { minLength: 1, maxLength: 3 }), dotAtom, ourDomain, (route, user, host) => {
      const original = `<${route.map((r) => `@${r}`).join(',')}:${user}@${host}>`
      const verdict = judgeRecipient({ user, host: host.toLowerCase(), original }, 1, policy)
      return verdict?.code === 550 && verdict.enhanced === '5.7.1'
    }),
  )
})

t.test('refuses any domain that is not ours with 550 5.7.1', async (t) => {
  holds(
    t,
    __filename,
    fc.property(dotAtom, fc.domain(), (user, host) => {
      fc.pre(!policy.domains.includes(host.toLowerCase().replace(/\.$/, '')))
      const verdict = judgeRecipient(rcpt(user, host), 1, policy)
      return verdict?.code === 550 && verdict.enhanced === '5.7.1'
    }),
  )
})

t.test('over the recipient limit every recipient hears 452 4.5.3, whatever it is', async (t) => {
  holds(
    t,
    __filename,
    fc.property(
      fc.string({ maxLength: 30 }),
      fc.string({ maxLength: 30 }),
      fc.integer({ min: 101, max: 1e6 }),
      (u, h, n) => {
        const verdict = judgeRecipient(rcpt(u, h), n, policy)
        return verdict?.code === 452 && verdict.enhanced === '4.5.3'
      },
    ),
  )
})

t.test('accepts bare <postmaster> in any letter case (RFC 5321 §4.5.1)', async (t) => {
  holds(
    t,
    __filename,
    fc.property(fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }), (upper) => {
      const user = [...'postmaster'].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('')
      return judgeRecipient({ user, host: '', original: `<${user}>` }, 1, policy) === null
    }),
    50,
  )
})
