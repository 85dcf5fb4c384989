// Addresses on the wire to a backend with or without SMTPUTF8.
import t from 'tap'
import { asciiAddress, wireEnvelope } from '../src/backend/address'

t.test('an IDN domain has an ASCII form; a non-ASCII local part has none', async (t) => {
  t.equal(asciiAddress('user@example.com'), 'user@example.com')
  t.equal(asciiAddress('user@bücher.example'), 'user@xn--bcher-kva.example')
  t.equal(asciiAddress('josé@example.com'), null)
  t.equal(asciiAddress('user@xn--.example'), 'user@xn--.example', 'ASCII is never touched, valid or not')
  t.equal(asciiAddress('user@exa mple.bücher'), null, 'a domain that is no IDN has no ASCII form')
  t.equal(asciiAddress('nobody-ü'), null, 'no domain, non-ASCII')
})

t.test('an envelope is rewritten only for a backend without SMTPUTF8, and only its domains', async (t) => {
  const env = { from: '', to: ['a@bücher.example', 'b@example.com'] }
  t.same(wireEnvelope(env, true), { from: '', to: env.to, smtputf8: true })
  t.same(wireEnvelope(env, false), { from: '', to: ['a@xn--bcher-kva.example', 'b@example.com'], smtputf8: false })
  t.equal(wireEnvelope({ from: 'josé@x.example', to: ['b@example.com'] }, false), null)
  t.same(wireEnvelope({ from: 's@x', to: ['b@example.com'] }, false), {
    from: 's@x',
    to: ['b@example.com'],
    smtputf8: false,
  })
})
