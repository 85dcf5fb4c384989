import t from 'tap'
import { REDIS_URL_FORMS, RedisUrlError } from '../src/cluster/errors'
import { clusterOptions, parseRedisUrl, redisOptions } from '../src/cluster/redis-options'

t.test('redis:// gives host, port, db and ACL credentials', async (t) => {
  t.same(parseRedisUrl('redis://mxgate:s%40cret@redis.internal:6380/2'), {
    mode: 'standalone',
    host: 'redis.internal',
    port: 6380,
    db: 2,
    tls: false,
    username: 'mxgate',
    password: 's@cret',
    display: 'redis://mxgate:***@redis.internal:6380/2',
  })
  t.same(parseRedisUrl('redis://127.0.0.1'), {
    mode: 'standalone',
    host: '127.0.0.1',
    port: 6379,
    db: 0,
    tls: false,
    display: 'redis://127.0.0.1',
  })
})

t.test('a password without a user is the classic AUTH password', async (t) => {
  const target = parseRedisUrl('redis://:hunter2@[::1]:7000')
  t.match(target, { host: '::1', port: 7000, password: 'hunter2' })
  t.notOk('username' in target)
})

t.test('rediss:// turns on TLS with the host name for SNI and certificate checks', async (t) => {
  const target = parseRedisUrl('rediss://default:pw@cache.example.net:6380')
  t.match(target, { mode: 'standalone', tls: true, host: 'cache.example.net', username: 'default', password: 'pw' })
  const options = redisOptions(target, 'command')
  t.same(options.tls, { servername: 'cache.example.net' })
  t.equal(options.username, 'default')
  t.equal(options.password, 'pw')
})

t.test('redis-sentinel:// lists sentinels, names the master, defaults to port 26379', async (t) => {
  const target = parseRedisUrl('redis-sentinel://app:pw@s1.local,s2.local:26380,[::1]/mymaster/3')
  t.same(target, {
    mode: 'sentinel',
    sentinels: [
      { host: 's1.local', port: 26379 },
      { host: 's2.local', port: 26380 },
      { host: '::1', port: 26379 },
    ],
    masterName: 'mymaster',
    db: 3,
    username: 'app',
    password: 'pw',
    display: 'redis-sentinel://app:***@s1.local,s2.local:26380,[::1]/mymaster/3',
  })
  const options = redisOptions(target, 'command')
  t.equal(options.name, 'mymaster')
  t.same(options.sentinels, target.mode === 'sentinel' ? target.sentinels : null)
  t.equal(parseRedisUrl('redis+sentinel://h:1/m').mode, 'sentinel', 'the redis+sentinel spelling works too')
})

t.test('redis-cluster:// lists seed nodes', async (t) => {
  const target = parseRedisUrl('redis-cluster://10.0.0.1:7000,10.0.0.2:7001')
  t.same(target, {
    mode: 'cluster',
    nodes: [
      { host: '10.0.0.1', port: 7000 },
      { host: '10.0.0.2', port: 7001 },
    ],
    display: 'redis-cluster://10.0.0.1:7000,10.0.0.2:7001',
  })
  if (target.mode !== 'cluster') throw new Error('unreachable')
  const options = clusterOptions(target, 'command')
  t.equal(options.enableOfflineQueue, false)
  t.equal(options.redisOptions?.commandTimeout, 500)
  t.equal(options.redisOptions?.maxRetriesPerRequest, 1)
})

t.test('the command client fails fast; the subscriber waits for Redis', async (t) => {
  const target = parseRedisUrl('redis://127.0.0.1:6380')
  const command = redisOptions(target, 'command')
  t.match(command, { enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: 500 })
  const subscriber = redisOptions(target, 'subscriber')
  t.match(subscriber, { enableOfflineQueue: true, maxRetriesPerRequest: null, autoResubscribe: true })
  t.notOk('commandTimeout' in subscriber)
  const retry = command.retryStrategy
  if (typeof retry !== 'function') throw new Error('no retryStrategy')
  t.same(
    [1, 2, 3, 4, 5, 6, 100].map((n) => retry(n)),
    [100, 200, 400, 800, 1600, 2000, 2000],
    'reconnects forever, backing off to at most 2 s',
  )
})

t.test('bad URLs are refused with the value (password masked) and the accepted forms', async (t) => {
  const cases: Array<[string, string]> = [
    ['localhost:6379', 'invalid Redis URL "localhost:6379": it has no scheme://'],
    ['http://localhost', 'invalid Redis URL "http://localhost": unknown scheme "http:"'],
    ['redis://', 'invalid Redis URL "redis://": it names no host'],
    ['redis://u:secret@h:99999', 'invalid Redis URL "redis://u:***@h:99999": port in "h:99999" must be 1-65535'],
    ['redis://h/x', 'invalid Redis URL "redis://h/x": database "x" must be a number, e.g. /0'],
    [
      'redis://a,b',
      'invalid Redis URL "redis://a,b": only one host is allowed here; use redis-sentinel:// or redis-cluster:// for several',
    ],
    ['redis://h?db=1', 'invalid Redis URL "redis://h?db=1": query strings and fragments are not supported'],
    ['redis://h_o st', 'invalid Redis URL "redis://h_o st": "h_o st" is not host[:port]'],
    [
      'redis-sentinel://s1:26379,s2:26379',
      'invalid Redis URL "redis-sentinel://s1:26379,s2:26379": the sentinel form needs the master name after the hosts, e.g. /mymaster',
    ],
    [
      'redis-cluster://n1:7000/0',
      'invalid Redis URL "redis-cluster://n1:7000/0": Redis Cluster has no databases or names: remove the path',
    ],
    ['redis://%zz:pw@h', 'invalid Redis URL "redis://%zz:***@h": the user info is not valid percent-encoding'],
  ]
  for (const [url, message] of cases) {
    t.throws(() => parseRedisUrl(url), { name: 'RedisUrlError', code: 'EREDISURL', url }, url)
    try {
      parseRedisUrl(url)
    } catch (err) {
      t.ok(err instanceof RedisUrlError)
      t.equal((err as Error).message, `${message}; expected ${REDIS_URL_FORMS}`)
      t.notMatch((err as Error).message, /secret|:pw@/, 'the password never shows')
    }
  }
})

t.test('the accepted forms are spelled out in the error', async (t) => {
  t.equal(
    REDIS_URL_FORMS,
    'redis://[user:pass@]host[:port][/db], rediss://[user:pass@]host[:port][/db] (TLS), ' +
      'redis-sentinel://[user:pass@]host:port[,host:port...]/mastername[/db], ' +
      'or redis-cluster://[user:pass@]host:port[,host:port...]',
  )
})
