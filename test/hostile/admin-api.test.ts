// The admin listener against a hostile client or a browser page, over real HTTP: a token for every change and for
// every read that shows envelope addresses, JSON bodies only, no request from another origin, bounded bodies.
import http from 'node:http'
import t from 'tap'
import { checkOrigin, ownOrigins } from '../../src/admin/request-guard'
import { MAX_BODY_BYTES } from '../../src/admin/server'
import { MemoryAdminPort, request, spoolItem, startTestAdmin, TEST_TOKEN } from '../admin-helpers'

function portWithMail(): MemoryAdminPort {
  const port = new MemoryAdminPort()
  port.messages.set('m1', spoolItem('m1'))
  return port
}

t.test('spool reads show envelope addresses: 401 without a token, 200 with one', async (t) => {
  const { url } = await startTestAdmin(t, { port: portWithMail() })
  for (const path of ['/api/spool', '/api/spool/m1']) {
    const res = await request(url, 'GET', path, { token: null })
    t.equal(res.status, 401, path)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="mxgate"')
    t.notOk(res.text.includes('alice@sender.example'), `${path}: no address in the refusal`)
  }
  t.same((await request(url, 'GET', '/api/spool', { token: null })).json, {
    error:
      'reading the spool (it shows envelope addresses) needs a token and the request had no Authorization header; send "Authorization: Bearer <token>" (mxgate --token T, --token-file F or MXGATE_ADMIN_TOKEN)',
  })
  t.same((await request(url, 'GET', '/api/spool/m1', { token: 'wrong' })).status, 401)
  t.same((await request(url, 'GET', '/api/spool/nope', { token: null })).status, 401, 'no token, not even a 404')
  const list = await request(url, 'GET', '/api/spool')
  t.equal(list.status, 200)
  t.match(list.json, { messages: [{ id: 'm1', from: 'alice@sender.example' }] })
  t.equal((await request(url, 'GET', '/api/spool/m1')).status, 200)
})

t.test('counts-only views stay open without a token: /metrics, /healthz, /readyz, backend states', async (t) => {
  const { url } = await startTestAdmin(t, { port: portWithMail() })
  for (const path of ['/metrics', '/healthz', '/readyz', '/api/backends', '/api/backends/mx1']) {
    t.equal((await request(url, 'GET', path, { token: null })).status, 200, path)
  }
})

t.test('a change whose body is not declared JSON is 415 and nothing changes', async (t) => {
  const { url, port, lines } = await startTestAdmin(t)
  const cases: [Record<string, string>, string][] = [
    [{ 'content-type': 'text/plain' }, 'Content-Type "text/plain"'],
    [{ 'content-type': 'application/x-www-form-urlencoded' }, 'Content-Type "application/x-www-form-urlencoded"'],
    [{ 'content-type': 'multipart/form-data; boundary=x' }, 'Content-Type "multipart/form-data; boundary=x"'],
    [{ 'content-type': 'application/jsonp' }, 'Content-Type "application/jsonp"'],
  ]
  for (const [headers, got] of cases) {
    const res = await request(url, 'POST', '/api/backends/mx1/eject', { headers, body: '{"reason":"csrf"}' })
    t.equal(res.status, 415, String(headers['content-type']))
    t.equal(res.headers.accept, 'application/json')
    t.equal(res.headers.connection, 'close', 'the unread body is not drained: the connection closes')
    t.same(res.json, {
      error: `changes take a JSON body: send "Content-Type: application/json" and a JSON object such as {} (got ${got})`,
    })
  }
  // Without any content type (curl -X POST with no -H): refused too, so a client states what it sends.
  const none = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(`${url}/api/spool/flush`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}` },
    })
    req.on('response', (res) => {
      let body = ''
      res.on('data', (c: Buffer) => {
        body += c.toString()
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(none.status, 415)
  t.same(JSON.parse(none.body), {
    error:
      'changes take a JSON body: send "Content-Type: application/json" and a JSON object such as {} (got no Content-Type)',
  })
  t.same(port.calls, [], 'nothing reached the port')
  t.equal(port.backend('mx1').state, 'admitted')
  t.equal(lines.filter((l) => l.audit === true && l.status === 415).length, 5, 'each refusal is audited')
  const charset = await request(url, 'POST', '/api/backends/mx1/drain', {
    headers: { 'content-type': 'Application/JSON; charset=utf-8' },
    body: '{"reason":"ok"}',
  })
  t.equal(charset.status, 200, 'parameters and case do not matter')
})

t.test('a request from a page of another origin is 403, reads and changes alike', async (t) => {
  const { url, port, server } = await startTestAdmin(t, { port: portWithMail() })
  const own = `http://127.0.0.1:${server.address.port}`
  const foreign = [
    'https://evil.example',
    'null',
    `http://127.0.0.1:${server.address.port + 1}`,
    `http://evil.example:${server.address.port}`,
    `http://127.0.0.1.evil.example:${server.address.port}`,
  ]
  for (const origin of foreign) {
    const change = await request(url, 'POST', '/api/backends/mx1/eject', {
      headers: { origin },
      body: { reason: 'from a web page' },
    })
    t.equal(change.status, 403, `POST with Origin ${origin}`)
    t.same(change.json, {
      error: `requests from a web page of another origin are refused (Origin: ${JSON.stringify(origin)}); use the mxgate command or curl, which send no Origin header`,
    })
    t.equal((await request(url, 'GET', '/api/spool', { headers: { origin } })).status, 403, `GET with Origin ${origin}`)
    t.equal((await request(url, 'GET', '/metrics', { headers: { origin } })).status, 403, `open read, ${origin}`)
  }
  // DNS rebinding: the page's origin and the Host header both name the attacker's host, which resolves to us.
  const rebound = await request(url, 'POST', '/api/backends/mx1/eject', {
    headers: { origin: 'http://rebind.example:8025', host: 'rebind.example:8025' },
    body: { reason: 'rebinding' },
  })
  t.equal(rebound.status, 403)
  t.same(port.calls, [], 'nothing reached the port')

  for (const origin of [own, `http://localhost:${server.address.port}`, `HTTP://127.0.0.1:${server.address.port}`]) {
    const ok = await request(url, 'POST', '/api/backends/mx1/drain', { headers: { origin }, body: { reason: 'ok' } })
    t.equal(ok.status, 200, `own origin ${origin}`)
  }
})

t.test('own origins: the listener, plus loopback names on loopback or wildcard binds', async (t) => {
  t.same([...ownOrigins(['127.0.0.1', '127.0.0.1'], 8025)].sort(), [
    'http://127.0.0.1:8025',
    'http://[::1]:8025',
    'http://localhost:8025',
    'https://127.0.0.1:8025',
    'https://[::1]:8025',
    'https://localhost:8025',
  ])
  t.ok(ownOrigins(['10.0.0.5', '10.0.0.5'], 80).has('http://10.0.0.5'), 'default port may be left out')
  t.notOk(ownOrigins(['10.0.0.5', '10.0.0.5'], 8025).has('http://localhost:8025'))
  const wild = ownOrigins(['0.0.0.0', '0.0.0.0'], 8025)
  t.doesNotThrow(() => checkOrigin('http://10.1.2.3:8025', '10.1.2.3:8025', wild, true), 'IP literal Host on *')
  t.throws(() => checkOrigin('http://admin.example:8025', 'admin.example:8025', wild, true), { code: 'EHTTP' })
  t.throws(() => checkOrigin('http://10.1.2.3:8025', '10.9.9.9:8025', wild, true), { code: 'EHTTP' })
  t.doesNotThrow(() => checkOrigin(undefined, 'x', wild, true), 'no Origin: not a browser page')
})

t.test('bodies over 64 KiB are 413, declared or streamed, and nothing changes', async (t) => {
  const { url, port } = await startTestAdmin(t)
  const declared = await request(url, 'POST', '/api/backends/mx1/eject', {
    body: JSON.stringify({ reason: 'x'.repeat(MAX_BODY_BYTES) }),
  })
  t.equal(declared.status, 413)
  t.same(declared.json, { error: 'request body is over 64 KB; admin requests are small JSON objects' })
  // Chunked, no Content-Length: the server counts as it reads.
  const streamed = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${url}/api/backends/mx1/eject`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_TOKEN}`, 'content-type': 'application/json' },
    })
    req.on('response', (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' ? undefined : reject(err)))
    req.write('{"reason":"')
    for (let i = 0; i < 20; i++) req.write('y'.repeat(8192))
    req.end('"}')
  })
  t.equal(streamed, 413)
  t.same(port.calls, [])
})
