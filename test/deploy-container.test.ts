// deploy/container/Dockerfile, read instruction by instruction (docker may not run where the tests do): the final
// stage runs as a non-root user, checks /healthz, keeps the spool on a volume, stops by SIGTERM, copies files that
// exist. And its probe script against a real admin API.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ROOT, startMxgate } from './helpers/mxgate-process'

interface Instruction {
  op: string
  args: string
}

/** Dockerfile instructions: comments dropped, backslash continuations joined. */
function parse(text: string): Instruction[] {
  const out: Instruction[] = []
  let pending = ''
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw)) continue
    const line = raw.replace(/\s+$/, '')
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `
      continue
    }
    const whole = (pending + line).trim()
    pending = ''
    if (whole === '') continue
    const m = /^(\S+)\s+(.*)$/s.exec(whole)
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]! })
  }
  return out
}

const all = parse(readFileSync(path.join(ROOT, 'deploy', 'container', 'Dockerfile'), 'utf8'))
const lastFrom = all.map((i) => i.op).lastIndexOf('FROM')
const final = all.slice(lastFrom)
const ops = (op: string) => final.filter((i) => i.op === op)
const env: Record<string, string> = {}
for (const e of ops('ENV')) for (const m of e.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!

t.test('the final stage runs as a non-root user', async (t) => {
  const user = ops('USER').at(-1)?.args
  t.ok(user && !/^(root|0)(:|$)/.test(user), `USER ${user}`)
  const lastRun = final.map((i) => i.op).lastIndexOf('RUN')
  t.ok(final.map((i) => i.op).lastIndexOf('USER') > lastRun, 'nothing runs as root after USER')
})

t.test('health check on /healthz; the spool on a volume; SIGTERM stops it; ports exposed', async (t) => {
  const hc = ops('HEALTHCHECK').at(-1)?.args ?? ''
  t.match(hc, /CMD .*probe\.js.*\/healthz/)
  t.match(hc, /--start-period=\d+s/, 'a start period for spool recovery')
  t.ok(env.MXGATE_SPOOL_DIR, 'MXGATE_SPOOL_DIR is set')
  t.ok(
    ops('VOLUME').some(
      (v) => v.args.includes(`"${env.MXGATE_SPOOL_DIR}"`) || v.args.split(/\s+/).includes(env.MXGATE_SPOOL_DIR!),
    ),
    `VOLUME ${env.MXGATE_SPOOL_DIR}`,
  )
  t.equal(ops('STOPSIGNAL').at(-1)?.args, 'SIGTERM')
  const exposed = ops('EXPOSE').flatMap((e) => e.args.split(/\s+/))
  t.ok(exposed.includes(env.MXGATE_LISTEN!.split(':')[1]!), 'the SMTP port')
  t.ok(exposed.includes(env.MXGATE_ADMIN_LISTEN!.split(':')[1]!), 'the admin port')
  t.match(ops('ENTRYPOINT').at(-1)?.args, /bin\/mxgate\.js/)
})

t.test('every file the build copies from the repository exists', async (t) => {
  for (const c of all.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) {
    const parts = c.args.split(/\s+/)
    for (const src of parts.slice(0, -1)) t.ok(existsSync(path.join(ROOT, src)), `COPY ${src}`)
  }
})

t.test('the probe script answers 0 for a 200 and 1 otherwise, against a real node', async (t) => {
  const node = await startMxgate({ backends: 'mx1=127.0.0.1:9' })
  t.teardown(() => node.stop())
  const probe = path.join('deploy', 'container', 'probe.js')
  const env = { MXGATE_ADMIN_LISTEN: `127.0.0.1:${node.adminPort}` }
  const ok = spawnSync(process.execPath, [probe, '/healthz'], { cwd: ROOT, env: { ...process.env, ...env } })
  t.equal(ok.status, 0, '/healthz is 200')
  const missing = spawnSync(process.execPath, [probe, '/no-such-path'], { cwd: ROOT, env: { ...process.env, ...env } })
  t.equal(missing.status, 1, 'a 404 is a failure')
})
