// The Kubernetes manifests in deploy/k8s: valid against the Kubernetes API schemas, no unknown fields, and wired the
// way mxgate needs (a volume per pod for the spool, probes on the right paths, a drain before the kill, a grace
// long enough for it, a disruption budget, an SMTP Service that keeps senders' addresses, settings that load).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { loadConfig } from '../src/config/load'
import { DEFAULTS } from '../src/config/schema'
import { stopBoundMs } from '../src/haraka/shutdown'
import { type Manifest, schemaErrors, unknownFieldErrors } from './helpers/k8s-schema'
import { ROOT } from './helpers/mxgate-process'

const DIR = path.join(ROOT, 'deploy', 'k8s')
/**
 * How long mxgate may take to stop with the default drain settings ([smtp] shutdown_grace + shutdown_timeout + the
 * close margin: 55 s). The supervisor must wait longer.
 */
const STOP_BOUND_S = stopBoundMs(DEFAULTS.smtp) / 1000

function load(): Manifest[] {
  const out: Manifest[] = []
  for (const file of readdirSync(DIR).filter((f) => f.endsWith('.yaml'))) {
    const docs = parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'))
    docs.forEach((d, index) => {
      if (d.errors.length > 0) throw new Error(`${file}#${index}: ${d.errors[0]!.message}`)
      out.push({ file, index, doc: d.toJS() as Manifest['doc'] })
    })
  }
  return out
}

const manifests = load()
// biome-ignore lint/suspicious/noExplicitAny: the manifests are checked against the schemas above; here we read them
const of = (kind: string, name?: string): any =>
  manifests.find((m) => m.doc.kind === kind && (name === undefined || m.doc.metadata?.name === name))?.doc

t.test('every manifest is valid against the Kubernetes schemas, with no unknown field', async (t) => {
  t.ok(manifests.length >= 6, `${manifests.length} manifests`)
  t.same(await schemaErrors(manifests), [])
  t.same(unknownFieldErrors(manifests, ROOT), [])
})

t.test('the checks catch a wrong type and a misspelt field', async (t) => {
  const bad = structuredClone(manifests.find((m) => m.doc.kind === 'StatefulSet')!)
  const spec = (bad.doc as ReturnType<typeof of>).spec.template.spec
  spec.containers[0].ports[0].containerPort = 'smtp'
  t.match((await schemaErrors([bad]))[0], /containerPort must be integer/)
  const typo = structuredClone(manifests.find((m) => m.doc.kind === 'StatefulSet')!)
  ;(typo.doc as ReturnType<typeof of>).spec.template.spec.terminationGracePeriodSecond = 90
  t.match(unknownFieldErrors([typo], ROOT)[0], /terminationGracePeriodSecond.*does not exist in type 'IPodSpec'/)
})

t.test('the StatefulSet keeps each spool on its own volume and drains before it stops', async (t) => {
  const sts = of('StatefulSet')
  const pod = sts.spec.template.spec
  const c = pod.containers[0]
  const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value]))
  const spoolMount = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === env.MXGATE_SPOOL_DIR)
  t.ok(spoolMount, 'the spool dir is a mounted volume')
  t.same(
    sts.spec.volumeClaimTemplates.map((v: { metadata: { name: string } }) => v.metadata.name),
    [spoolMount.name],
    'from a volumeClaimTemplate: one PersistentVolume per pod',
  )
  t.notOk(
    (pod.volumes ?? []).some((v: { name: string }) => v.name === spoolMount.name),
    'not an emptyDir or other pod volume',
  )
  t.equal(sts.spec.persistentVolumeClaimRetentionPolicy.whenScaled, 'Retain', 'a scale-down keeps the spool')
  const ports = Object.fromEntries(c.ports.map((p: { name: string; containerPort: number }) => [p.name, p]))
  t.equal(String(ports.admin.containerPort), env.MXGATE_ADMIN_LISTEN.split(':')[1], 'probes reach the admin port')
  t.equal(String(ports.smtp.containerPort), env.MXGATE_LISTEN.split(':')[1])
  t.equal(c.startupProbe.httpGet.path, '/healthz')
  t.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 300, 'startup allows 5+ minutes of recovery')
  t.equal(c.livenessProbe.httpGet.path, '/healthz')
  t.equal(c.readinessProbe.httpGet.path, '/readyz')
  t.same(c.lifecycle.preStop.exec.command, ['/bin/sh', '/opt/mxgate/deploy/container/prestop.sh'])
  const dockerfile = readFileSync(path.join(ROOT, 'deploy', 'container', 'Dockerfile'), 'utf8')
  t.match(dockerfile, /COPY [^\n]*deploy\/container\/prestop\.sh[^\n]* \.\/deploy\/container\//, 'the image has it')
  t.match(dockerfile, /WORKDIR \/opt\/mxgate/)
  const needed = Math.max(STOP_BOUND_S, DEFAULTS.relay.deadlineMs / 1000)
  t.ok(pod.terminationGracePeriodSeconds > needed, `grace ${pod.terminationGracePeriodSeconds}s > ${needed}s`)
  t.ok(pod.securityContext.runAsNonRoot)
  t.equal(pod.securityContext.fsGroup, pod.securityContext.runAsUser, 'the spool volume is writable by mxgate')
})

t.test('the disruption budget and the Services select the pods', async (t) => {
  const labels = of('StatefulSet').spec.template.metadata.labels
  const pdb = of('PodDisruptionBudget')
  t.same(pdb.spec.selector.matchLabels, labels)
  t.equal(pdb.spec.maxUnavailable, 1)
  const smtp = of('Service', 'mxgate-smtp')
  t.same(smtp.spec.selector, labels)
  t.equal(smtp.spec.externalTrafficPolicy, 'Local', "the sender's address reaches mxgate")
  t.same(
    smtp.spec.ports.map((p: { port: number; targetPort: string }) => [p.port, p.targetPort]),
    [[25, 'smtp']],
  )
  t.equal(of('Service', 'mxgate-headless').metadata.name, of('StatefulSet').spec.serviceName)
  const proxied = Object.keys(smtp.metadata.annotations ?? {}).some((k) => k.endsWith('proxy-protocol'))
  const env = of('StatefulSet').spec.template.spec.containers[0].env as { name: string; value?: string }[]
  t.equal(
    env.some((e) => e.name === 'MXGATE_PROXY_HOSTS' && (e.value ?? '') !== ''),
    proxied,
    'PROXY protocol on the load balancer goes with MXGATE_PROXY_HOSTS in the pods, or neither',
  )
})

t.test('the shipped settings load: ConfigMap mxgate.ini with the Secret and env of the pod', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mxgate-k8s-cfg-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(path.join(dir, 'mxgate.ini'), of('ConfigMap').data['mxgate.ini'])
  const secret = of('Secret').stringData
  const env: NodeJS.ProcessEnv = {}
  for (const e of of('StatefulSet').spec.template.spec.containers[0].env) {
    env[e.name] = e.value ?? secret[e.valueFrom.secretKeyRef.key]
  }
  t.notOk(env.MXGATE_BACKENDS, 'the pool comes from the file, so a reload can change it')
  const cfg = loadConfig({ baseDir: path.join(ROOT, 'config'), overrideDir: dir, env })
  t.ok(cfg.backends.length >= 2)
  t.match(cfg.redis.url, /^redis-sentinel:\/\//, 'Redis is an external dependency, reached through Sentinel')
})
