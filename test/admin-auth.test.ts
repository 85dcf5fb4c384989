// Who may change things: token parsing with exact errors, constant-time matching, 401 before anything changes,
// no change without a token (not even from loopback), and one audit line per change attempt.
import net from 'node:net'
import t from 'tap'
import { authorizeChange, bearerToken, isLoopbackClient, parseTokens } from '../src/admin/auth'
import { request, startTestAdmin } from './admin-helpers'

const ALICE = 'alice-token-4f9a1c'
const CI = 'ci-token-77b2e0'

t.test('admin.token: one bare token is named "admin"; a list names every token', async (t) => {
  t.same(parseTokens(null).names, [])
  t.same(parseTokens('   ').names, [])
  const bare = parseTokens('s3cret')
  t.same(bare.names, ['admin'])
  t.equal(bare.match('s3cret'), 'admin')
  const list = parseTokens(` alice:${ALICE} , ci:${CI}`)
  t.same(list.names, ['alice', 'ci'])
  t.equal(list.match(ALICE), 'alice')
  t.equal(list.match(CI), 'ci')
  t.equal(list.match(`alice:${ALICE}`), null, 'the name is not part of the token')
  t.equal(list.match(ALICE.slice(0, -1)), null, 'a prefix does not match')
  t.equal(list.match(''), null)
  t.same(parseTokens('a/b:c').names, ['admin'], 'text before a colon that is not a plain name is part of a bare token')
  t.equal(parseTokens('a/b:c').match('a/b:c'), 'admin')
  t.equal(parseTokens('ops:tok:en').match('tok:en'), 'ops', 'a token may itself contain colons')
})

t.test('admin.token errors name the entry and never print the token', async (t) => {
  const cases: [string, string][] = [
    ['alice:one,,ci:two', 'admin.token entry 2 is empty; write name:token entries separated by commas'],
    ['alice:one,bare', 'admin.token entry 2 has no name; in a list every entry is name:token (e.g. alice:s3cret)'],
    ['alice:', 'admin.token ("alice") has an empty token'],
    ['alice:one,alice:two', 'admin.token entry 2: the name "alice" appears twice; give every token its own name'],
    [
      'alice:same1,ci:same1',
      'admin.token entry 2 ("ci") repeats the token of "alice"; audit could not tell them apart',
    ],
  ]
  for (const [text, message] of cases) t.throws(() => parseTokens(text), { code: 'ETOKENCONFIG', message }, text)
})

t.test('bearer header parsing and loopback detection', async (t) => {
  t.equal(bearerToken('Bearer abc'), 'abc')
  t.equal(bearerToken('bearer   abc  '), 'abc')
  t.equal(bearerToken('Basic YWJj'), undefined)
  t.equal(bearerToken('Bearer a b'), undefined)
  t.equal(bearerToken(undefined), undefined)
  for (const a of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) t.ok(isLoopbackClient(a), a)
  for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '128.0.0.1', 'fe80::1']) t.notOk(isLoopbackClient(a), a)
})

t.test('without any token configured, nothing changes, not even from loopback (403)', async (t) => {
  const none = parseTokens(null)
  const refused = {
    ok: false,
    status: 403,
    who: 'anonymous@127.0.0.1',
    error:
      'this node has no admin token, so this change is refused; set admin.token (or MXGATE_ADMIN_TOKEN), or let mxgate start generate admin.token_file',
  }
  t.same(authorizeChange(none, undefined, '::ffff:127.0.0.1'), refused)
  t.same(authorizeChange(none, 'Bearer whatever', '127.0.0.1'), refused)
  t.same(authorizeChange(none, undefined, '::1'), { ...refused, who: 'anonymous@::1' })
  t.same(authorizeChange(parseTokens(ALICE), `Bearer ${ALICE}`, '10.1.2.3'), {
    ok: true,
    actor: { by: 'admin', from: '10.1.2.3' },
  })

  const { url, port } = await startTestAdmin(t, { tokens: null })
  const res = await request(url, 'POST', '/api/backends/mx1/drain', { body: { reason: 'patching' }, token: null })
  t.equal(res.status, 403)
  t.same(res.json, { error: refused.error })
  const spool = await request(url, 'GET', '/api/spool', { token: null })
  t.equal(spool.status, 403)
  t.same(spool.json, {
    error:
      'this node has no admin token, so reading the spool (it shows envelope addresses) is refused; set admin.token (or MXGATE_ADMIN_TOKEN), or let mxgate start generate admin.token_file',
  })
  t.same(port.calls, [], 'nothing reached the port')
  t.equal(port.backend('mx1').state, 'admitted')
})

t.test('on an IPv6 loopback listener a token is needed too, and the actor is its name', async (t) => {
  const probe = net.createServer()
  const v6 = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false))
    probe.listen(0, '::1', () => probe.close(() => resolve(true)))
  })
  if (!v6) {
    t.plan(0, 'no IPv6 loopback on this machine')
    return
  }
  const { url, port, server } = await startTestAdmin(t, { host: '::1' })
  t.equal(server.address.host, '::1')
  t.equal((await request(url, 'POST', '/api/backends/mx1/restore', { token: null })).status, 401)
  const res = await request(url, 'POST', '/api/backends/mx1/restore')
  t.equal(res.status, 200)
  t.same(port.calls[0]?.actor, { by: 'admin', from: '::1' })
})

t.test('with tokens, a change without a token or with a wrong one is 401 and the port is not called', async (t) => {
  const { url, port, lines } = await startTestAdmin(t, { tokens: `alice:${ALICE},ci:${CI}` })
  const missing = await request(url, 'POST', '/api/backends/mx1/eject', { body: { reason: 'r' }, token: null })
  t.equal(missing.status, 401)
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="mxgate"')
  t.same(missing.json, {
    error:
      'this change needs a token and the request had no Authorization header; send "Authorization: Bearer <token>" (mxgate --token T, --token-file F or MXGATE_ADMIN_TOKEN)',
  })
  const wrong = await request(url, 'POST', '/api/backends/mx1/eject', { body: { reason: 'r' }, token: 'guess' })
  t.equal(wrong.status, 401)
  t.same(wrong.json, {
    error:
      "the token does not match any admin token of this node; check --token / --token-file / MXGATE_ADMIN_TOKEN against admin.token or the node's admin.token_file (for a name:token list, send only the part after the colon)",
  })
  const basic = await request(url, 'POST', '/api/spool/flush', { headers: { authorization: 'Basic YWxpY2U6eA==' } })
  t.equal(basic.status, 401)
  t.match((basic.json as { error: string }).error, /an Authorization header that is not "Bearer <token>"/)
  const unknownAndUnauthorized = await request(url, 'POST', '/api/backends/nope/eject', {
    body: { reason: 'r' },
    token: null,
  })
  t.equal(unknownAndUnauthorized.status, 401, 'no token, no information: auth comes before the id lookup')
  t.same(port.calls, [], 'nothing reached the port')
  t.equal(port.backend('mx1').state, 'admitted')

  const ok = await request(url, 'POST', '/api/backends/mx1/eject', { body: { reason: 'r' }, token: CI })
  t.equal(ok.status, 200)
  t.same(port.calls[0]?.actor, { by: 'ci', from: '127.0.0.1' })

  const audits = lines.filter((l) => l.audit === true)
  t.same(
    audits.map((l) => [l.who, l.what, l.status]),
    [
      ['anonymous@127.0.0.1', 'eject mx1', 401],
      ['anonymous@127.0.0.1', 'eject mx1', 401],
      ['anonymous@127.0.0.1', 'flush', 401],
      ['anonymous@127.0.0.1', 'eject nope', 401],
      ['ci', 'eject mx1', 200],
    ],
    'refused attempts are audited too',
  )
  t.notOk(JSON.stringify(lines).includes(ALICE) || JSON.stringify(lines).includes(CI), 'no token in any log line')
})

t.test('every change writes one audit line: who, what, why, from, result', async (t) => {
  const { url, lines } = await startTestAdmin(t, { tokens: `alice:${ALICE}` })
  await request(url, 'POST', '/api/backends/mx2/eject', {
    token: ALICE,
    body: { reason: 'fails 3% at dot', for: '2h' },
  })
  await request(url, 'POST', '/api/backends/mx2/restore', { token: ALICE })
  await request(url, 'POST', '/api/backends/mx2/eject', { token: ALICE, body: {} })
  await request(url, 'POST', '/api/backends/zz/drain', { token: ALICE, body: { reason: 'x' } })
  await request(url, 'GET', '/api/backends')
  const audits = lines.filter((l) => l.audit === true)
  t.equal(audits.length, 4, 'reads are not audited')
  t.match(audits[0], {
    level: 30,
    audit: true,
    who: 'alice',
    what: 'eject mx2',
    why: 'fails 3% at dot',
    from: '127.0.0.1',
    status: 200,
    result: 'ok',
    forMs: 7_200_000,
    msg: 'admin change',
  })
  t.match(audits[1], { who: 'alice', what: 'restore mx2', why: null, result: 'ok' })
  t.match(audits[2], {
    who: 'alice',
    what: 'eject mx2',
    status: 400,
    result: 'reason is required: say why you eject mx2',
  })
  t.match(audits[3], {
    who: 'alice',
    what: 'drain zz',
    why: 'x',
    status: 404,
    result: 'unknown backend "zz"; known: mx1, mx2, mx3',
  })
})
