// The status page's routes on the real admin server over a MemoryAdminPort: the page itself (self-contained, its
// script allowed by nonce only, the node name escaped), and the two reads it refreshes from, open without a token
// and free of envelope addresses.
import t from 'tap'
import { escapeHtml } from '../src/admin/status-page'
import { historyMinutesOf } from '../src/admin/status-routes'
import { MemoryAdminPort, request, spoolItem, startTestAdmin, TEST_TOKEN } from './admin-helpers'

t.test('GET / is one self-contained page whose only script runs by the nonce of its own response', async (t) => {
  const admin = await startTestAdmin(t)
  const a = await request(admin.url, 'GET', '/', { token: null })
  t.equal(a.status, 200)
  t.match(a.headers['content-type'], /^text\/html; charset=utf-8/)
  const csp = String(a.headers['content-security-policy'])
  const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1]
  t.ok(nonce, csp)
  t.match(csp, /default-src 'none'/)
  t.match(csp, /connect-src 'self'/)
  t.match(csp, /frame-ancestors 'none'/)
  t.equal(a.headers['referrer-policy'], 'no-referrer')
  const scripts = [...a.text.matchAll(/<script([^>]*)>/g)].map((m) => m[1])
  t.same(scripts, [` nonce="${nonce}"`], 'one inline script, carrying the nonce')
  t.notMatch(a.text, /\b(src|href)=["']?(https?:)?\/\//i, 'no external asset')
  t.notMatch(a.text, /<link\b/i)
  t.notOk(a.text.includes(TEST_TOKEN), 'the token is not in the page')
  const b = await request(admin.url, 'GET', '/', { token: null })
  t.not(/nonce-([^']+)/.exec(String(b.headers['content-security-policy']))?.[1], nonce, 'a new nonce per response')
})

t.test('the node name in the page is escaped', async (t) => {
  const port = new MemoryAdminPort()
  port.nodeName = '<img src=x onerror=alert(1)>"&'
  const admin = await startTestAdmin(t, { port })
  const page = await request(admin.url, 'GET', '/', { token: null })
  t.notOk(page.text.includes('<img src=x'), 'no markup from the name')
  t.ok(page.text.includes('&lt;img src=x onerror=alert(1)&gt;&quot;&amp;'))
  t.equal(escapeHtml(`<a href='x'>&"`), '&lt;a href=&#39;x&#39;&gt;&amp;&quot;')
})

t.test('GET /api/status needs no token and carries counts and ages, never an envelope address', async (t) => {
  const port = new MemoryAdminPort()
  port.messages.set('m1', spoolItem('m1', { receivedAt: 1_000, held: true }))
  port.messages.set('m2', spoolItem('m2', { receivedAt: 2_000 }))
  const admin = await startTestAdmin(t, { port })
  const r = await request(admin.url, 'GET', '/api/status', { token: null })
  t.equal(r.status, 200)
  t.match(r.json, {
    node: 'node-a',
    backends: [{ id: 'mx1' }, { id: 'mx2' }, { id: 'mx3' }],
    readiness: { ready: true },
    spool: { messages: 2, held: 1, oldestReceivedAt: 1_000 },
    redis: { configured: false },
  })
  t.notOk(r.text.includes('@'), 'no address in the reply')
  const spool = await request(admin.url, 'GET', '/api/spool', { token: null })
  t.equal(spool.status, 401, 'the envelopes still need the token')
})

t.test('GET /api/history takes minutes from 1 to 30 (default 30) and refuses anything else by name', async (t) => {
  const admin = await startTestAdmin(t)
  const ok = await request(admin.url, 'GET', '/api/history?minutes=5', { token: null })
  t.equal(ok.status, 200)
  t.match(ok.json, { node: 'node-a', stepMs: 30_000 })
  await request(admin.url, 'GET', '/api/history', { token: null })
  t.same(admin.port.historyWindows, [300_000, 1_800_000])
  for (const bad of ['0', '31', 'abc', '5.5', '-1']) {
    const r = await request(admin.url, 'GET', `/api/history?minutes=${bad}`, { token: null })
    t.equal(r.status, 400, bad)
    t.match(r.json, { error: `minutes must be a whole number from 1 to 30; got "${bad}"` })
  }
  t.equal(historyMinutesOf(null), 30)
  t.equal(historyMinutesOf('30'), 30)
})
