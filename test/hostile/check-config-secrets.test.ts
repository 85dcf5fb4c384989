// `mxgate check-config` output can be pasted into a ticket: admin tokens and the Redis password are masked.
import t from 'tap'
import { maskUrlPassword, redactConfig } from '../../src/config/redact'
import type { MxgateConfig } from '../../src/config/schema'
import { runMxgate } from '../helpers/mxgate-process'

const BASE = { MXGATE_BACKENDS: 'mx1=127.0.0.1:2601', MXGATE_DOMAINS: 'example.com' }

t.test('Redis URL passwords are masked, whatever they contain; usernames and hosts stay', async (t) => {
  const cases: [string, string][] = [
    ['redis://:s3cret@10.0.0.1:6379/2', 'redis://:***@10.0.0.1:6379/2'],
    ['rediss://app:s3cret@redis.example:6380', 'rediss://app:***@redis.example:6380'],
    ['redis://app:p@ss:w/rd@redis.example', 'redis://app:***@redis.example'],
    ['redis-sentinel://:pw@s1:26379,s2:26379/mymaster', 'redis-sentinel://:***@s1:26379,s2:26379/mymaster'],
    ['redis://app@redis.example', 'redis://app@redis.example'],
    ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'],
  ]
  for (const [url, masked] of cases) t.equal(maskUrlPassword(url), masked, url)
})

t.test('redactConfig masks every token of a list by name and leaves the config it was given alone', async (t) => {
  const cfg = {
    admin: { listen: { host: '127.0.0.1', port: 8025 }, token: 'alice:one, ci:two', tokenFile: '/x/admin.token' },
    redis: { url: 'redis://:pw@h:6379', prefix: 'mxgate:' },
    canary: { webhookToken: 'hook-secret-0123456789' },
  } as unknown as MxgateConfig
  const out = redactConfig(cfg)
  t.equal(out.canary.webhookToken, '***', "the canary webhook's token too")
  t.equal(cfg.canary.webhookToken, 'hook-secret-0123456789')
  t.equal(out.admin.token, 'alice:***,ci:***')
  t.equal(out.admin.tokenFile, '/x/admin.token', 'a path is not a secret')
  t.equal(out.redis.url, 'redis://:***@h:6379')
  t.equal(cfg.admin.token, 'alice:one, ci:two', 'the original is untouched')
  t.equal(redactConfig({ ...cfg, admin: { ...cfg.admin, token: 'bare-secret' } }).admin.token, '***')
})

t.test('mxgate check-config prints no admin token and no Redis password', async (t) => {
  const r = await runMxgate(['check-config'], {
    ...BASE,
    MXGATE_ADMIN_TOKEN: 'ops:tok-3f9a8b,ci:tok-77c1d2',
    MXGATE_REDIS_URL: 'redis://mxgate:redis-pw-51e0@10.0.0.7:6379/1',
  })
  t.equal(r.code, 0, r.stderr)
  const cfg = JSON.parse(r.stdout) as MxgateConfig
  t.equal(cfg.admin.token, 'ops:***,ci:***')
  t.equal(cfg.redis.url, 'redis://mxgate:***@10.0.0.7:6379/1')
  for (const secret of ['tok-3f9a8b', 'tok-77c1d2', 'redis-pw-51e0']) {
    t.notOk(r.stdout.includes(secret) || r.stderr.includes(secret), `${secret} is printed nowhere`)
  }
  const bare = await runMxgate(['check-config'], { ...BASE, MXGATE_ADMIN_TOKEN: 'bare-8c2e', MXGATE_REDIS_URL: '' })
  t.equal(bare.code, 0, bare.stderr)
  t.match(bare.stdout, /"token": "\*\*\*"/)
  t.notOk(bare.stdout.includes('bare-8c2e'))
  const invalid = await runMxgate(['check-config'], { ...BASE, MXGATE_REDIS_URL: 'http://:pa@ss-9d1@redis:6379' })
  t.equal(invalid.code, 2)
  t.match(invalid.stderr, 'invalid Redis URL "http://:***@redis:6379"')
  t.notOk(invalid.stderr.includes('ss-9d1'), 'an error about the URL does not leak the part of the password after an @')
})
