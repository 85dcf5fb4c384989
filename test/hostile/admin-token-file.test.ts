// With no admin.token configured, `mxgate start` generates one into a file only its owner can read, logs where (never
// the token), and the mxgate command reads it: --token-file, MXGATE_ADMIN_TOKEN_FILE, or the node's default file.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ensureTokenFile, readTokenFile } from '../../src/admin/token-file'
import { chooseToken } from '../../src/cli/token-source'
import { adminTokenFile, loadConfig } from '../../src/config/load'
import { FakeBackend } from '../../src/testing/fake-backend'
import { ROOT, runMxgate, startMxgate } from '../helpers/mxgate-process'

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-token-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('the token file is created once, 0600, and read back the same', async (t) => {
  const file = path.join(tempDir(t), 'spool', 'admin.token')
  const first = ensureTokenFile(file)
  t.equal(first.created, true)
  t.match(first.token, /^[A-Za-z0-9_-]{43}$/, '256 random bits, base64url')
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.equal(readFileSync(file, 'utf8'), `${first.token}\n`)
  t.same(ensureTokenFile(file), { token: first.token, created: false }, 'a restart keeps the token')
  t.equal(readTokenFile(file), first.token)
  t.not(ensureTokenFile(path.join(path.dirname(file), 'other.token')).token, first.token, 'every file its own token')
})

t.test(
  'a token file others may read, an empty one or a missing one is refused, naming the file and the fix',
  async (t) => {
    const dir = tempDir(t)
    const open = path.join(dir, 'open.token')
    writeFileSync(open, 'secret-1\n')
    chmodSync(open, 0o644)
    const msg = `the admin token file ${open} may be read by others (mode 0644); run chmod 600 ${open}, or delete it and restart mxgate to get a new token`
    t.throws(() => readTokenFile(open), { code: 'ETOKENFILE', message: msg })
    t.throws(() => ensureTokenFile(open), { code: 'ETOKENFILE', message: msg }, 'start refuses it too')
    const empty = path.join(dir, 'empty.token')
    writeFileSync(empty, '\n', { mode: 0o600 })
    t.throws(() => readTokenFile(empty), {
      message: `the admin token file ${empty} is empty; delete it and restart mxgate`,
    })
    t.throws(() => readTokenFile(path.join(dir, 'nope')), {
      message: `cannot read the admin token file ${path.join(dir, 'nope')}: ENOENT`,
    })
    const notDir = path.join(dir, 'a-file')
    writeFileSync(notDir, '')
    t.throws(() => ensureTokenFile(path.join(notDir, 'admin.token')), {
      code: 'ETOKENFILE',
      message: `cannot create the admin token file ${path.join(notDir, 'admin.token')}: EEXIST; set admin.token_file (MXGATE_ADMIN_TOKEN_FILE) to a writable path or set admin.token`,
    })
  },
)

t.test('the default token file is <spool dir>/admin.token, or admin.token_file', async (t) => {
  const base = path.join(ROOT, 'config')
  const env = { MXGATE_BACKENDS: 'a=127.0.0.1:1', MXGATE_DOMAINS: 'example.com' }
  t.equal(
    adminTokenFile(loadConfig({ baseDir: base, env: { ...env, MXGATE_SPOOL_DIR: '/var/spool/mx' } })),
    '/var/spool/mx/admin.token',
  )
  t.equal(
    adminTokenFile(loadConfig({ baseDir: base, env: { ...env, MXGATE_ADMIN_TOKEN_FILE: '/etc/mxgate/token' } })),
    '/etc/mxgate/token',
  )
})

t.test(
  'the CLI picks --token, then MXGATE_ADMIN_TOKEN, then a named file, then the default file (loopback only)',
  async (t) => {
    const dir = tempDir(t)
    const a = path.join(dir, 'a.token')
    const b = path.join(dir, 'b.token')
    writeFileSync(a, 'token-a\n', { mode: 0o600 })
    writeFileSync(b, 'token-b\n', { mode: 0o600 })
    const local = new URL('http://127.0.0.1:8025')
    const pick = (over: Partial<Parameters<typeof chooseToken>[0]>) =>
      chooseToken({ flag: undefined, fileFlag: undefined, env: {}, admin: local, defaultFile: b, ...over })
    t.same(pick({ flag: 'flag' }), { token: 'flag', source: '--token', note: null })
    t.same(pick({ env: { MXGATE_ADMIN_TOKEN: 'env' } }), { token: 'env', source: 'MXGATE_ADMIN_TOKEN', note: null })
    t.same(pick({ fileFlag: a }), { token: 'token-a', source: `file ${a}`, note: null })
    t.same(pick({ env: { MXGATE_ADMIN_TOKEN_FILE: a } }), { token: 'token-a', source: `file ${a}`, note: null })
    t.same(pick({}), { token: 'token-b', source: `file ${b}`, note: null }, 'the node’s own file')
    t.same(pick({ admin: new URL('http://[::1]:8025') }).token, 'token-b', 'IPv6 loopback is local too')
    t.same(
      pick({ admin: new URL('http://mx2.example:8025') }),
      { token: undefined, source: null, note: null },
      'a local token file is never sent to another host',
    )
    t.same(pick({ defaultFile: path.join(dir, 'none') }), {
      token: undefined,
      source: null,
      note: `cannot read the admin token file ${path.join(dir, 'none')}: ENOENT`,
    })
    t.throws(() => pick({ fileFlag: path.join(dir, 'none') }), { code: 'ETOKENFILE' }, 'a named file must work')
  },
)

t.test('a node without admin.token generates its token file; the CLI uses it, nothing else gets in', async (t) => {
  const mx1 = new FakeBackend({ id: 'mx1' })
  await mx1.start()
  t.teardown(() => mx1.stop())
  const spool = tempDir(t)
  const env = { MXGATE_ADMIN_TOKEN: '', MXGATE_ADMIN_TOKEN_FILE: '', MXGATE_SPOOL_DIR: spool }
  let node = await startMxgate({ backends: `mx1=127.0.0.1:${mx1.port}`, env, keepSpool: true })
  t.teardown(() => node.stop())
  const file = path.join(spool, 'admin.token')
  t.equal(statSync(file).mode & 0o777, 0o600, 'owner-only file')
  const token = readFileSync(file, 'utf8').trim()
  const said = node.logs.find((l) => l.tokenFile !== undefined)
  t.match(said, { tokenFile: file, created: true, msg: /^admin token generated/ }, 'the log says where')
  t.notOk(
    node.logs.some((l) => JSON.stringify(l).includes(token)),
    'the token is in no log line',
  )
  const admin = `http://127.0.0.1:${node.adminPort}`

  const anonymous = await fetch(`${admin}/api/backends/mx1/drain`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"reason":"local user"}',
  })
  t.equal(anonymous.status, 401, 'loopback without a token changes nothing')

  // The operator on the node: same settings (here the spool dir), no token given, the default file is read.
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    runMxgate([...args, '--admin', admin], { ...env, MXGATE_ADMIN_URL: '', NO_COLOR: '1', ...extra })
  const drained = await cli(['drain', 'mx1', '--reason', 'patching'])
  t.equal(drained.code, 0, drained.stderr)
  t.match(drained.stdout, /^draining mx1: now draining; patching \(by admin\)/)
  const elsewhere = { MXGATE_SPOOL_DIR: tempDir(t) }
  const withFile = await cli(['restore', 'mx1', '--token-file', file], elsewhere)
  t.equal(withFile.code, 0, withFile.stderr)
  const viaEnv = await cli(['spool', 'ls'], { ...elsewhere, MXGATE_ADMIN_TOKEN_FILE: file })
  t.equal(viaEnv.code, 0, viaEnv.stderr)
  const without = await cli(['spool', 'ls'], elsewhere)
  t.equal(without.code, 1)
  t.match(
    without.stderr,
    /^mxgate spool ls: refused by http:\/\/127\.0\.0\.1:\d+ \(401\): reading the spool \(it shows envelope addresses\) needs a token .*\(no token was sent: pass --token T or --token-file F, or set MXGATE_ADMIN_TOKEN; cannot read the admin token file .*admin\.token: ENOENT\)\n$/,
  )
  const missing = await cli(['status', '--token-file', path.join(spool, 'nope')])
  t.equal(missing.code, 2)
  t.equal(missing.stderr, `mxgate status: cannot read the admin token file ${path.join(spool, 'nope')}: ENOENT\n`)

  // A restart keeps the token; a file others may read stops the start with the fix.
  await node.stop()
  node = await startMxgate({ backends: `mx1=127.0.0.1:${mx1.port}`, env, keepSpool: true })
  t.equal(readFileSync(file, 'utf8').trim(), token, 'same token after a restart')
  t.match(
    node.logs.find((l) => l.tokenFile !== undefined),
    { created: false },
  )
  await node.stop()
  chmodSync(file, 0o640)
  const refused = await runMxgate(['start'], {
    ...env,
    MXGATE_BACKENDS: `mx1=127.0.0.1:${mx1.port}`,
    MXGATE_DOMAINS: 'example.com',
  })
  t.equal(refused.code, 2)
  t.equal(
    refused.stderr,
    `mxgate: admin.token_file: the admin token file ${file} may be read by others (mode 0640); run chmod 600 ${file}, or delete it and restart mxgate to get a new token\n`,
  )
})

t.test('with worker processes, every worker serves the one generated token', async (t) => {
  const mx1 = new FakeBackend({ id: 'mx1' })
  await mx1.start()
  t.teardown(() => mx1.stop())
  const spool = tempDir(t)
  const env = { MXGATE_ADMIN_TOKEN: '', MXGATE_ADMIN_TOKEN_FILE: '', MXGATE_SPOOL_DIR: spool, MXGATE_WORKERS: '2' }
  const node = await startMxgate({ backends: `mx1=127.0.0.1:${mx1.port}`, env, keepSpool: true })
  t.teardown(() => node.stop())
  t.equal(node.logs.filter((l) => l.tokenFile !== undefined).length, 1, 'the master says where, once')
  // Connections spread over both workers: every one of them must accept the file's token.
  for (let i = 0; i < 6; i++) {
    const r = await runMxgate(['status', '--json', '--admin', `http://127.0.0.1:${node.adminPort}`], {
      MXGATE_ADMIN_TOKEN: '',
      MXGATE_SPOOL_DIR: spool,
    })
    t.equal(r.code, 0, r.stderr)
    const ls = await runMxgate(['spool', 'ls', '--admin', `http://127.0.0.1:${node.adminPort}`], {
      MXGATE_ADMIN_TOKEN: '',
      MXGATE_SPOOL_DIR: spool,
    })
    t.equal(ls.code, 0, ls.stderr)
  }
})
