// The status page in a real browser (Debian's chromium driven by playwright-core) against a real `mxgate start`
// with fake backends: one fails a share of its messages, an operator ejects it, two messages wait in the spool. The
// page must show what the API says (states, the ejected backend's reason, spool counts), no envelope address without
// the token, the envelopes with it, and never the token itself.
// MXGATE_UPDATE_SCREENSHOT=1 writes the screenshot to docs/status-page.png (the README's picture); otherwise to a
// temp dir.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import type { StatusView } from '../src/admin/types'
import { FakeBackend } from '../src/testing/fake-backend'
import { eventuallyAsync } from '../src/testing/mxgate-cluster'
import { makeTestMessage, sendMessage } from '../src/testing/smtp-sender'
import { ROOT, startMxgate } from './helpers/mxgate-process'
import { findTool, skipWithout } from './helpers/tools'

const TOKEN = 'page-test-token-7c41'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
]
/** Load shaping, not synchronisation: spreads the traffic over a few chart steps (1 s each in a 1-minute window). */
const SEND_PACE_MS = 120
const MESSAGES = 320
const SENDER = 'alice@sender.test'
const RECIPIENT = 'bob@example.com'

const chromium = findTool(['/usr/bin/chromium'])

async function backend(t: Test, id: string, faults: ConstructorParameters<typeof FakeBackend>[0] = {}) {
  const b = new FakeBackend({ id, ...faults })
  await b.start()
  t.teardown(() => b.stop())
  return b
}

const pace = () => new Promise((r) => setTimeout(r, SEND_PACE_MS))

const skip = skipWithout(t, chromium, 'chromium', 'apt-get install -y chromium')
t.test('the status page shows what the API reports, envelopes only with the token', { skip }, async (t) => {
  const { chromium: pw } = await import('playwright-core')
  const failing = { stage: 'dot' as const, action: 'reply' as const, reply: '451 4.3.0 Temporary failure' }
  const mx1 = await backend(t, 'mx1', { seed: 11 })
  const mx2 = await backend(t, 'mx2', { seed: 12 })
  const mx3 = await backend(t, 'mx3', { seed: 13 })
  const conf = mkdtempSync(path.join(os.tmpdir(), 'mxgate-page-conf-'))
  t.teardown(() => rmSync(conf, { recursive: true, force: true }))
  // A short bucket so a minute's chart has points; a lower reference so the detector compares within the run.
  writeFileSync(
    path.join(conf, 'mxgate.ini'),
    '[detector]\nbucket = 1s\nretention = 1m\nmin_reference = 50\n[spool]\nfsync = false\n',
  )
  const node = await startMxgate({
    backends: [mx1, mx2, mx3].map((b) => `${b.id}=127.0.0.1:${b.port}`).join(','),
    env: { MXGATE_ADMIN_TOKEN: `ops:${TOKEN}` },
    args: ['--config', conf],
  })
  t.teardown(() => node.stop())
  const admin = `http://127.0.0.1:${node.adminPort}`
  const api = async <T>(p: string, init: RequestInit = {}): Promise<T> => {
    const r = await fetch(`${admin}${p}`, init)
    if (!r.ok) throw new Error(`${p}: HTTP ${r.status} ${await r.text()}`)
    return (await r.json()) as T
  }
  const send = () =>
    sendMessage({
      host: '127.0.0.1',
      port: node.port,
      from: SENDER,
      to: [RECIPIENT],
      message: makeTestMessage({ from: SENDER, to: [RECIPIENT] }),
    })

  // Two messages no backend takes: they wait in the spool, held so that no re-admission retries them meanwhile.
  for (const b of [mx1, mx2, mx3]) await b.setFaults([failing])
  for (let i = 0; i < 2; i++) t.ok((await send()).ok, 'spooled and answered 250')
  await Promise.all([mx1.setFaults([{ ...failing, probability: 0.2 }]), mx2.setFaults([]), mx3.setFaults([])])
  const asOps = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }
  const spooled = await api<{ messages: { id: string }[] }>('/api/spool', { headers: asOps })
  t.equal(spooled.messages.length, 2)
  for (const m of spooled.messages) await api(`/api/spool/${m.id}/hold`, { method: 'POST', headers: asOps, body: '{}' })

  // Traffic with mx1 failing 20%: its line runs below the others (the detector may eject it on the way).
  let refused = 0
  for (let i = 0; i < MESSAGES / 2; i++) {
    for (const r of await Promise.all([send(), send()])) if (!r.ok) refused++
    await pace()
  }
  t.equal(refused, 0, 'every message is taken (mx1 fails over)')
  const eject = await fetch(`${admin}/api/backends/mx1/eject`, {
    method: 'POST',
    headers: asOps,
    body: JSON.stringify({ reason: 'fails 20% of messages at the final dot; ticket OPS-42' }),
  })
  t.equal(eject.status, 200, await eject.text())
  t.match(await api<StatusView>('/api/status'), { spool: { messages: 2, held: 2 } })

  const profile = mkdtempSync(path.join(os.tmpdir(), 'mxgate-chromium-'))
  const context = await pw.launchPersistentContext(profile, {
    executablePath: chromium!,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 900 },
  })
  t.teardown(async () => {
    await context.close()
    rmSync(profile, { recursive: true, force: true })
  })
  const page = context.pages()[0] ?? (await context.newPage())
  const problems: string[] = []
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`))
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`)
  })
  const requests: { url: string; authorization: string | undefined }[] = []
  page.on('request', (r) => requests.push({ url: r.url(), authorization: r.headers().authorization }))
  await page.goto(`${admin}/?minutes=1`)

  const rounds = async () => Number((await page.getAttribute('body', 'data-rounds')) ?? 0)
  const shown = () =>
    page.$$eval('tr[data-backend]', (rows) =>
      rows.map((r) => ({
        id: r.getAttribute('data-backend'),
        state: r.querySelector('[data-field=state]')?.textContent,
        reason: r.querySelector('[data-field=reason]')?.textContent,
      })),
    )
  // The page and the API agree (read both until they do: a state may change between two reads).
  let last: unknown
  const agree = await eventuallyAsync(async () => {
    if ((await rounds()) < 1) return false
    const st = await api<StatusView>('/api/status')
    const rows = await shown()
    last = { api: st.backends.map((b) => [b.id, b.state]), page: rows.map((r) => [r.id, r.state]) }
    return (
      rows.length === st.backends.length &&
      st.backends.every((b, i) => rows[i]!.id === b.id && rows[i]!.state === b.state)
    )
  }, 20_000)
  t.ok(agree, `the page shows the states the API reports: ${JSON.stringify(last)}`)
  const mx1Row = (await shown()).find((r) => r.id === 'mx1')
  t.equal(mx1Row?.state, 'manual-ejected')
  t.match(mx1Row?.reason, /fails 20% of messages at the final dot; ticket OPS-42 \(by ops\)/)
  t.equal(await page.textContent('#spool-messages'), '2')
  t.match(await page.textContent('[data-field=readiness]'), 'ready')
  t.ok(await page.$('svg.chart g.ejection[data-backend=mx1]'), 'the ejection is marked on the timeline')
  t.ok(await page.$('svg.chart path[data-line=pool]'), 'the pool has its line')

  const before = await page.content()
  t.notOk(before.includes(SENDER) || before.includes(RECIPIENT), 'no envelope address without the token')
  t.ok(await page.$('[data-field=envelopes-locked]'), 'it says the token is needed')
  t.notOk(
    requests.some((r) => new URL(r.url).pathname === '/api/spool'),
    'the spool is not even asked for without a token',
  )

  await page.fill('#token', TOKEN)
  await page.click('#token-form button[type=submit]')
  const listed = await eventuallyAsync(async () => (await page.$$('tr[data-spool-id]')).length === 2, 15_000)
  t.ok(listed, 'with the token, the two spooled messages are listed')
  const after = await page.content()
  t.ok(after.includes(SENDER) && after.includes(RECIPIENT), 'their envelopes are shown')
  t.notOk(after.includes(TOKEN), 'the token is not in the page')
  t.equal(await page.inputValue('#token'), '', 'the input is emptied')
  t.notOk(
    requests.some((r) => r.url.includes(TOKEN)),
    'the token is never in a URL',
  )
  const spoolReads = requests.filter((r) => new URL(r.url).pathname === '/api/spool')
  t.ok(spoolReads.length > 0 && spoolReads.every((r) => r.authorization === `Bearer ${TOKEN}`), 'sent as a bearer')
  t.equal(
    await page.evaluate(() =>
      (globalThis as unknown as { sessionStorage: { getItem(k: string): string | null } }).sessionStorage.getItem(
        'mxgate.adminToken',
      ),
    ),
    TOKEN,
    'kept for this tab only',
  )

  const shot =
    process.env.MXGATE_UPDATE_SCREENSHOT === '1'
      ? path.join(ROOT, 'docs', 'status-page.png')
      : path.join(mkdtempSync(path.join(os.tmpdir(), 'mxgate-shot-')), 'status-page.png')
  mkdirSync(path.dirname(shot), { recursive: true })
  await page.screenshot({ path: shot, fullPage: true })
  t.comment(`screenshot: ${shot}`)

  // Data is text, never markup: a reason with HTML in it shows as typed and runs nothing.
  const hostile = '<img src=x onerror="document.body.dataset.pwned=1"><b>bold</b>'
  await api('/api/backends/mx2/drain', { method: 'POST', headers: asOps, body: JSON.stringify({ reason: hostile }) })
  const literal = await eventuallyAsync(
    async () => (await page.textContent('tr[data-backend=mx2] [data-field=reason]'))?.startsWith(hostile) === true,
    15_000,
  )
  t.ok(literal, 'the reason is shown as its text')
  t.equal(
    await page.$$eval('#backends img, #backends b, #events img, #events b', (els) => els.length),
    0,
    'no element made from it',
  )
  t.equal(await page.getAttribute('body', 'data-pwned'), null, 'no script run from it')

  await page.click('#forget')
  t.ok(
    await eventuallyAsync(async () => (await page.$('[data-field=envelopes-locked]')) !== null, 15_000),
    'forgetting the token hides the envelopes again',
  )
  t.same(problems, [], 'no script error, no CSP violation')
})
