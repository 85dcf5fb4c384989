// Builds the one validated MxgateConfig: built-in defaults ← base file ← override file ← environment.
// Every error names where the bad value came from (file:line or env variable), the key, and how to fix it.
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { CANARY_ENV, CANARY_KEYS, checkCanary } from './canary-keys'
import { checkDetector, DETECTOR_KEYS } from './detector-keys'
import { type IniSection, IniSyntaxError, parseIni } from './ini'
import { OPS_ENV, OPS_KEYS } from './ops-keys'
import { type BackendConfig, DEFAULTS, type MxgateConfig } from './schema'
import { readCaFile, readKeyPair, TLS_VERSIONS, TlsFileError, type TlsVersion } from './tls'
import { isLoopback, parseDuration, parseHostPort, parseSize } from './units'
import { checkVerify, VERIFY_KEYS } from './verify-keys'

export class ConfigError extends Error {
  readonly code = 'ECONFIG'
  constructor(
    /** Where the value came from: "config/mxgate.ini:12", "env MXGATE_LISTEN". */
    readonly source: string,
    /** The setting, e.g. "smtp.listen" or "backend.mx1.address". */
    readonly key: string,
    problem: string,
  ) {
    super(`${source}: ${key}: ${problem}`)
    this.name = 'ConfigError'
  }
}

interface RawValue {
  value: string
  source: string
}

type Parsed<T> = T | { error: string }
type Setter = (cfg: MxgateConfig, raw: string) => Parsed<true>

const isErr = (v: unknown): v is { error: string } => typeof v === 'object' && v !== null && 'error' in v

function duration(set: (cfg: MxgateConfig, ms: number) => void, min = 1): Setter {
  return (cfg, raw) => {
    const ms = parseDuration(raw)
    if (ms === null) return { error: `"${raw}" is not a duration; write e.g. 500ms, 30s, 5m, 2h` }
    if (ms < min) return { error: `"${raw}" is too short; use at least ${min}ms` }
    set(cfg, ms)
    return true
  }
}

function int(set: (cfg: MxgateConfig, n: number) => void, min: number, max: number): Setter {
  return (cfg, raw) => {
    const n = Number(raw)
    if (!/^\d+$/.test(raw) || n < min || n > max) {
      return { error: `"${raw}" must be a whole number from ${min} to ${max}` }
    }
    set(cfg, n)
    return true
  }
}

function size(set: (cfg: MxgateConfig, bytes: number) => void): Setter {
  return (cfg, raw) => {
    const n = parseSize(raw)
    if (n === null) return { error: `"${raw}" is not a size; write e.g. 500MB, 10GB, 65536` }
    set(cfg, n)
    return true
  }
}

function bool(set: (cfg: MxgateConfig, b: boolean) => void): Setter {
  return (cfg, raw) => {
    const v = raw.toLowerCase()
    if (['true', 'yes', 'on', '1'].includes(v)) set(cfg, true)
    else if (['false', 'no', 'off', '0'].includes(v)) set(cfg, false)
    else return { error: `"${raw}" must be true or false` }
    return true
  }
}

function address(set: (cfg: MxgateConfig, hp: { host: string; port: number }) => void): Setter {
  return (cfg, raw) => {
    const hp = parseHostPort(raw)
    if (!hp) return { error: `"${raw}" is not host:port; write e.g. 127.0.0.1:2525 or [::1]:2525` }
    set(cfg, hp)
    return true
  }
}

function text(set: (cfg: MxgateConfig, s: string | null) => void, allowEmpty: boolean): Setter {
  return (cfg, raw) => {
    if (raw === '' && !allowEmpty) return { error: 'must not be empty' }
    set(cfg, raw === '' ? null : raw)
    return true
  }
}

const DOMAIN_RE = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/

export function parseDomains(raw: string): Parsed<string[]> {
  const list = raw
    .split(/[,\s]+/)
    .map((d) => d.trim().toLowerCase().replace(/\.$/, ''))
    .filter((d) => d !== '')
  for (const d of list) {
    if (!DOMAIN_RE.test(d)) return { error: `"${d}" is not a domain name` }
  }
  return [...new Set(list)]
}

/** A certificate name to verify a backend against: a host name (no wildcard), or empty for none. */
function parseServername(raw: string): Parsed<string | null> {
  if (raw === '') return null
  const name = raw.toLowerCase().replace(/\.$/, '')
  if (!DOMAIN_RE.test(name))
    return {
      error: `"${raw}" is not a host name; write the name in the backend's certificate, e.g. mx.internal.example`,
    }
  return name
}

/** Settings that no longer exist, and what replaces them: an old file stops start-up with the fix, not a surprise. */
const REMOVED_SETTINGS: Record<string, string> = {
  'backend_client.tls_reject_unauthorized':
    "removed; certificate checks now follow starttls: required encrypts and verifies the certificate (against tls_ca, or the system CAs, and the backend's name), opportunistic encrypts without verifying. Delete this line; with self-signed backend certificates and starttls = required, set tls_ca to a file holding them",
}

/** The settings outside [backend.*] sections, by "section.key". */
const SETTINGS: Record<string, Setter> = {
  'smtp.listen': address((c, v) => {
    c.smtp.listen = v
  }),
  'smtp.hostname': text((c, v) => {
    c.smtp.hostname = v ?? ''
  }, false),
  'smtp.workers': int(
    (c, v) => {
      c.smtp.workers = v
    },
    0,
    64,
  ),
  'smtp.domains': (c, raw) => {
    const d = parseDomains(raw)
    if (isErr(d)) return d
    c.smtp.domains = d
    return true
  },
  'smtp.max_recipients': int(
    (c, v) => {
      c.smtp.maxRecipients = v
    },
    100,
    100_000,
  ),
  'smtp.greet_pause': duration((c, v) => {
    c.smtp.greetPauseMs = v
  }, 0),
  'smtp.authserv_ids': (c, raw) => {
    const d = parseDomains(raw)
    if (isErr(d)) return { error: `${d.error}; list host names, e.g. authserv_ids = mx.example.com, mx1.example.com` }
    c.smtp.authservIds = d
    return true
  },
  'smtp.max_connections': int(
    (c, v) => {
      c.smtp.maxConnections = v
    },
    1,
    1_000_000,
  ),
  'smtp.max_connections_per_ip': int(
    (c, v) => {
      c.smtp.maxConnectionsPerIp = v
    },
    1,
    1_000_000,
  ),
  'smtp.max_messages_per_connection': int(
    (c, v) => {
      c.smtp.maxMessagesPerConnection = v
    },
    1,
    1_000_000,
  ),
  'smtp.max_errors': int(
    (c, v) => {
      c.smtp.maxErrors = v
    },
    0,
    1_000_000,
  ),
  'smtp.max_junk_commands': int(
    (c, v) => {
      c.smtp.maxJunkCommands = v
    },
    0,
    1_000_000,
  ),
  'smtp.idle_timeout': duration((c, v) => {
    c.smtp.idleTimeoutMs = v
  }, 1000),
  'smtp.data_timeout': duration((c, v) => {
    c.smtp.dataTimeoutMs = v
  }, 1000),
  'smtp.min_data_rate': int(
    (c, v) => {
      c.smtp.minDataRate = v
    },
    0,
    1_000_000_000,
  ),
  'smtp.data_rate_grace': duration((c, v) => {
    c.smtp.dataRateGraceMs = v
  }, 0),
  'smtp.max_message_memory': size((c, v) => {
    c.smtp.maxMessageMemory = v
  }),
  'relay.deadline': duration((c, v) => {
    c.relay.deadlineMs = v
  }, 1000),
  'relay.max_attempts': int(
    (c, v) => {
      c.relay.maxAttempts = v
    },
    1,
    20,
  ),
  'relay.second_opinion': bool((c, v) => {
    c.relay.secondOpinion = v
  }),
  'backend_client.max_sessions': int(
    (c, v) => {
      c.client.maxSessions = v
    },
    1,
    10_000,
  ),
  'backend_client.session_wait': duration((c, v) => {
    c.client.sessionWaitMs = v
  }, 0),
  'backend_client.max_messages_per_session': int(
    (c, v) => {
      c.client.maxMessagesPerSession = v
    },
    1,
    1_000_000,
  ),
  'backend_client.idle_timeout': duration((c, v) => {
    c.client.idleTimeoutMs = v
  }),
  'backend_client.starttls': (c, raw) => {
    if (raw !== 'off' && raw !== 'opportunistic' && raw !== 'required') {
      return { error: `"${raw}" must be off, opportunistic or required` }
    }
    c.client.starttls = raw
    return true
  },
  'backend_client.tls_ca': text((c, v) => {
    c.client.tlsCa = v
  }, true),
  'backend_client.tls_servername': (c, raw) => {
    const name = parseServername(raw)
    if (isErr(name)) return name
    c.client.tlsServername = name
    return true
  },
  'tls.cert': text((c, v) => {
    c.tls.cert = v
  }, true),
  'tls.key': text((c, v) => {
    c.tls.key = v
  }, true),
  'tls.min_version': (c, raw) => {
    const v = TLS_VERSIONS.find((x) => x.toLowerCase() === raw.toLowerCase())
    if (v === undefined) {
      const old = /^(TLSv1|TLSv1\.1|SSLv3)$/i.test(raw)
        ? " (Node's OpenSSL refuses older versions at its default security level)"
        : ''
      return { error: `"${raw}" must be ${TLS_VERSIONS.join(' or ')}${old}` }
    }
    c.tls.minVersion = v satisfies TlsVersion
    return true
  },
  'breaker.error_threshold': (c, raw) => {
    const m = /^(\d+(?:\.\d+)?)%?$/.exec(raw)
    const n = m ? Number(m[1]) : Number.NaN
    if (!(n > 0 && n < 100)) return { error: `"${raw}" must be a percentage between 0 and 100, e.g. 50%` }
    c.breaker.errorThresholdPercent = n
    return true
  },
  'breaker.window': duration((c, v) => {
    c.breaker.windowMs = v
  }, 1000),
  'breaker.window_buckets': int(
    (c, v) => {
      c.breaker.windowBuckets = v
    },
    1,
    1000,
  ),
  'breaker.min_volume': int(
    (c, v) => {
      c.breaker.minVolume = v
    },
    1,
    100_000,
  ),
  'breaker.ejection_time': duration((c, v) => {
    c.breaker.ejectionMs = v
  }, 100),
  'breaker.max_ejection_time': duration((c, v) => {
    c.breaker.maxEjectionMs = v
  }, 100),
  'breaker.repeat_reset': duration((c, v) => {
    c.breaker.repeatResetMs = v
  }),
  'breaker.slow_start': duration((c, v) => {
    c.breaker.slowStartMs = v
  }, 0),
  'admin.listen': address((c, v) => {
    c.admin.listen = v
  }),
  'admin.token': text((c, v) => {
    c.admin.token = v
  }, true),
  'admin.token_file': text((c, v) => {
    c.admin.tokenFile = v
  }, false),
  'spool.dir': text((c, v) => {
    c.spool.dir = v ?? ''
  }, false),
  'spool.max_messages': int(
    (c, v) => {
      c.spool.maxMessages = v
    },
    1,
    100_000_000,
  ),
  'spool.max_size': size((c, v) => {
    c.spool.maxBytes = v
  }),
  'spool.min_free_disk': size((c, v) => {
    c.spool.minFreeBytes = v
  }),
  'spool.fsync': bool((c, v) => {
    c.spool.fsync = v
  }),
  'spool.retry_first': duration((c, v) => {
    c.spool.retryFirstMs = v
  }, 100),
  'spool.retry_max': duration((c, v) => {
    c.spool.retryMaxMs = v
  }, 100),
  'spool.lifetime': duration((c, v) => {
    c.spool.lifetimeMs = v
  }, 1000),
  'spool.on_expiry': (c, raw) => {
    if (raw !== 'hold' && raw !== 'bounce') return { error: `"${raw}" must be hold or bounce` }
    c.spool.onExpiry = raw
    return true
  },
  'spool.drain_rate': int(
    (c, v) => {
      c.spool.drainRate = v
    },
    1,
    100_000,
  ),
  'spool.concurrency': int(
    (c, v) => {
      c.spool.concurrency = v
    },
    1,
    1000,
  ),
  'spool.bounce_relay': (c, raw) => {
    if (raw === '') {
      c.spool.bounceRelay = null
      return true
    }
    const hp = parseHostPort(raw)
    if (!hp) return { error: `"${raw}" is not host:port; write e.g. smarthost.example.com:25, or leave it empty` }
    c.spool.bounceRelay = hp
    return true
  },
  'spool.held_dsn_max': int(
    (c, v) => {
      c.spool.heldDsnMax = v
    },
    0,
    100_000_000,
  ),
  'spool.held_dsn_lifetime': duration((c, v) => {
    c.spool.heldDsnLifetimeMs = v
  }, 1000),
  'journal.enabled': bool((c, v) => {
    c.journal.enabled = v
  }),
  'journal.dir': text((c, v) => {
    c.journal.dir = v
  }, true),
  'journal.retention': duration((c, v) => {
    c.journal.retentionMs = v
  }, 60_000),
  'journal.max_size': (c, raw) => {
    const n = parseSize(raw)
    if (n === null) return { error: `"${raw}" is not a size; write e.g. 500MB, 10GB` }
    if (n < 1024 ** 2) return { error: `"${raw}" is too small; use at least 1MB (one segment must fit)` }
    c.journal.maxBytes = n
    return true
  },
  'journal.disk_share': (c, raw) => {
    const m = /^(\d+(?:\.\d+)?)%$/.exec(raw)
    const n = m ? Number(m[1]) : Number.NaN
    if (!(n > 0 && n <= 90)) {
      return {
        error: `"${raw}" must be a percentage above 0% and at most 90%, e.g. 25% (of the space the journal could use)`,
      }
    }
    c.journal.diskShare = n / 100
    return true
  },
  'journal.batch': (c, raw) => {
    const ms = parseDuration(raw)
    if (ms === null) return { error: `"${raw}" is not a duration; write e.g. 50ms, 1s` }
    if (ms < 1 || ms > 10_000) {
      return { error: `"${raw}" must be from 1ms to 10s (the journal may lag the mail by one batch)` }
    }
    c.journal.batchMs = ms
    return true
  },
  'redis.url': text((c, v) => {
    c.redis.url = v
  }, true),
  'redis.prefix': text((c, v) => {
    c.redis.prefix = v ?? ''
  }, false),
}

Object.assign(SETTINGS, DETECTOR_KEYS, OPS_KEYS, VERIFY_KEYS, CANARY_KEYS)

for (const stage of Object.keys(DEFAULTS.client.timeouts) as (keyof MxgateConfig['client']['timeouts'])[]) {
  SETTINGS[`backend_client.${stage}_timeout`] = duration((c, v) => {
    c.client.timeouts[stage] = v
  }, 10)
}

/** Environment variables and the setting each one overrides. */
export const ENV_SETTINGS: Record<string, string> = {
  MXGATE_LISTEN: 'smtp.listen',
  MXGATE_HOSTNAME: 'smtp.hostname',
  MXGATE_WORKERS: 'smtp.workers',
  MXGATE_DOMAINS: 'smtp.domains',
  MXGATE_ADMIN_LISTEN: 'admin.listen',
  MXGATE_ADMIN_TOKEN: 'admin.token',
  MXGATE_ADMIN_TOKEN_FILE: 'admin.token_file',
  MXGATE_SPOOL_DIR: 'spool.dir',
  MXGATE_JOURNAL: 'journal.enabled',
  MXGATE_JOURNAL_DIR: 'journal.dir',
  MXGATE_REDIS_URL: 'redis.url',
  MXGATE_TLS_CERT: 'tls.cert',
  MXGATE_TLS_KEY: 'tls.key',
  ...OPS_ENV,
  MXGATE_VERIFY: 'verify.enabled',
  ...CANARY_ENV,
}

export const SETTING_KEYS = Object.keys(SETTINGS)

interface RawBackend {
  id: string
  source: string
  address?: RawValue
  weight?: RawValue
  servername?: RawValue
}

const BACKEND_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

function readLayer(file: string, values: Map<string, RawValue>): RawBackend[] | null {
  let sections: IniSection[]
  try {
    sections = parseIni(readFileSync(file, 'utf8'), file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError(file, '(file)', 'file not found; check the path given to --config')
    }
    if (err instanceof IniSyntaxError) throw new ConfigError(`${file}:${err.line}`, '(syntax)', err.detail)
    throw err
  }
  let backends: RawBackend[] | null = null
  for (const section of sections) {
    const where = `${file}:${section.line}`
    if (section.name === '' && section.entries.length > 0) {
      const e = section.entries[0]!
      throw new ConfigError(`${file}:${e.line}`, e.key, 'setting outside any [section]; put it under e.g. [smtp]')
    }
    if (section.name.startsWith('backend.')) {
      const id = section.name.slice('backend.'.length)
      if (!BACKEND_ID_RE.test(id)) {
        throw new ConfigError(where, section.name, 'backend id must be letters, digits, "-" or "_" (max 64)')
      }
      backends ??= []
      const b: RawBackend = { id, source: where }
      for (const e of section.entries) {
        const raw = { value: e.value, source: `${file}:${e.line}` }
        if (e.key === 'address') b.address = raw
        else if (e.key === 'weight') b.weight = raw
        else if (e.key === 'servername') b.servername = raw
        else
          throw new ConfigError(
            raw.source,
            `${section.name}.${e.key}`,
            'unknown key; a backend has address, weight and servername',
          )
      }
      backends.push(b)
      continue
    }
    for (const e of section.entries) {
      const key = `${section.name}.${e.key}`
      const source = `${file}:${e.line}`
      const removed = REMOVED_SETTINGS[key]
      if (removed !== undefined) throw new ConfigError(source, key, removed)
      if (!(key in SETTINGS)) throw new ConfigError(source, key, unknownKeyHint(key))
      values.set(key, { value: e.value, source })
    }
    if (
      section.name !== '' &&
      section.entries.length === 0 &&
      !SETTING_KEYS.some((k) => k.startsWith(`${section.name}.`))
    ) {
      throw new ConfigError(where, `[${section.name}]`, 'unknown section')
    }
  }
  return backends
}

function unknownKeyHint(key: string): string {
  const section = key.split('.')[0]
  const known = SETTING_KEYS.filter((k) => k.startsWith(`${section}.`)).map((k) => k.slice(section!.length + 1))
  if (known.length === 0) {
    const sections = [...new Set(SETTING_KEYS.map((k) => k.split('.')[0]))]
    return `unknown section [${section}]; known sections: ${sections.join(', ')}, backend.ID`
  }
  return `unknown key; [${section}] knows: ${known.join(', ')}`
}

/** MXGATE_BACKENDS="mx1=10.0.0.1:25,mx2=10.0.0.2:25[,…]" (an optional "*WEIGHT" suffix sets a weight). */
export function parseBackendList(raw: string, source: string): RawBackend[] {
  const out: RawBackend[] = []
  for (const item of raw.split(',').map((s) => s.trim())) {
    if (item === '') continue
    const m = /^([^=\s]+)=([^*\s]+)(?:\*(\d+))?$/.exec(item)
    if (!m) {
      throw new ConfigError(source, 'backends', `"${item}" is not id=host:port; write e.g. mx1=127.0.0.1:2601,mx2=…`)
    }
    const b: RawBackend = { id: m[1]!, source, address: { value: m[2]!, source } }
    if (m[3] !== undefined) b.weight = { value: m[3], source }
    out.push(b)
  }
  return out
}

function buildBackends(raw: RawBackend[]): BackendConfig[] {
  const seen = new Map<string, string>()
  const out: BackendConfig[] = []
  for (const b of raw) {
    if (!BACKEND_ID_RE.test(b.id)) {
      throw new ConfigError(b.source, `backend ${b.id}`, 'backend id must be letters, digits, "-" or "_" (max 64)')
    }
    const first = seen.get(b.id)
    if (first !== undefined) {
      throw new ConfigError(
        b.source,
        `backend ${b.id}`,
        `duplicate backend id (first defined at ${first}); ids must be unique`,
      )
    }
    seen.set(b.id, b.source)
    if (!b.address) throw new ConfigError(b.source, `backend.${b.id}.address`, 'missing; add address = host:port')
    const hp = parseHostPort(b.address.value)
    if (!hp) {
      throw new ConfigError(
        b.address.source,
        `backend.${b.id}.address`,
        `"${b.address.value}" is not host:port; write e.g. 10.0.0.5:25 or [::1]:25`,
      )
    }
    let weight = 100
    if (b.weight) {
      weight = Number(b.weight.value)
      if (!/^\d+$/.test(b.weight.value) || weight < 1 || weight > 10_000) {
        throw new ConfigError(b.weight.source, `backend.${b.id}.weight`, `"${b.weight.value}" must be 1 to 10000`)
      }
    }
    const backend: BackendConfig = { id: b.id, host: hp.host, port: hp.port, weight }
    if (b.servername) {
      const name = parseServername(b.servername.value)
      if (isErr(name)) throw new ConfigError(b.servername.source, `backend.${b.id}.servername`, name.error)
      if (name !== null) backend.servername = name
    }
    out.push(backend)
  }
  return out
}

/** The file `mxgate start` generates (or reads) the admin token in when admin.token is not set. */
export function adminTokenFile(cfg: MxgateConfig): string {
  return path.resolve(cfg.admin.tokenFile ?? path.join(cfg.spool.dir, 'admin.token'))
}

/** The journal's directory: journal.dir, else `<spool.dir>/journal`. */
export function journalDir(cfg: MxgateConfig): string {
  return path.resolve(cfg.journal.dir ?? path.join(cfg.spool.dir, 'journal'))
}

export interface LoadOptions {
  /** The shipped config directory (holds mxgate.ini). */
  baseDir: string
  /** `--config DIR`: its mxgate.ini is layered over the base. */
  overrideDir?: string | undefined
  env?: NodeJS.ProcessEnv
}

export function loadConfig(opts: LoadOptions): MxgateConfig {
  const env = opts.env ?? process.env
  const values = new Map<string, RawValue>()
  const files: string[] = []
  let rawBackends: RawBackend[] = []
  const layers = [path.join(opts.baseDir, 'mxgate.ini')]
  if (opts.overrideDir !== undefined) layers.push(path.join(opts.overrideDir, 'mxgate.ini'))
  for (const [i, file] of layers.entries()) {
    // The base file is optional (built-in defaults stand in); an override file named on the command line is not.
    if (i === 0 && !existsSync(file)) continue
    files.push(file)
    // Backends come whole from the last layer that lists any: merging pools across files hides mistakes.
    const b = readLayer(file, values)
    if (b) rawBackends = b
  }
  for (const [name, key] of Object.entries(ENV_SETTINGS)) {
    const v = env[name]
    if (v !== undefined && v !== '') values.set(key, { value: v.trim(), source: `env ${name}` })
  }
  if (env.MXGATE_BACKENDS !== undefined && env.MXGATE_BACKENDS !== '') {
    rawBackends = parseBackendList(env.MXGATE_BACKENDS, 'env MXGATE_BACKENDS')
  }

  const cfg: MxgateConfig = { files, ...structuredClone(DEFAULTS) }
  for (const [key, raw] of values) {
    const r = SETTINGS[key]!(cfg, raw.value)
    if (isErr(r)) throw new ConfigError(raw.source, key, r.error)
  }
  cfg.backends = buildBackends(rawBackends)
  validateWhole(cfg, values)
  checkTlsFiles(cfg, values)
  return cfg
}

/**
 * A relative TLS path is taken from the directory of the file that names it (an environment variable's from the
 * working directory), and is stored absolute: the listener re-reads it later, whatever the working directory then.
 */
function tlsPath(value: string, raw: RawValue | undefined): string {
  const file = raw?.source.startsWith('env ') === false ? raw.source.replace(/:\d+$/, '') : null
  return path.resolve(file !== null ? path.dirname(file) : process.cwd(), value)
}

/** The certificate and key must come as a readable pair that belongs together, the CA file must hold certificates. */
function checkTlsFiles(cfg: MxgateConfig, values: Map<string, RawValue>): void {
  const src = (key: string) => values.get(key)?.source ?? 'built-in default'
  const { cert, key } = cfg.tls
  if ((cert === null) !== (key === null)) {
    const missing = cert === null ? 'tls.cert' : 'tls.key'
    const given = cert === null ? 'tls.key' : 'tls.cert'
    throw new ConfigError(
      src(given),
      missing,
      `${given} is set but ${missing} is not; STARTTLS needs both (or neither, to offer no STARTTLS)`,
    )
  }
  try {
    if (cert !== null && key !== null) {
      cfg.tls.cert = tlsPath(cert, values.get('tls.cert'))
      cfg.tls.key = tlsPath(key, values.get('tls.key'))
      readKeyPair(cfg.tls.cert, cfg.tls.key)
    }
    if (cfg.client.tlsCa !== null) {
      cfg.client.tlsCa = tlsPath(cfg.client.tlsCa, values.get('backend_client.tls_ca'))
      readCaFile(cfg.client.tlsCa)
    }
  } catch (err) {
    if (err instanceof TlsFileError) throw new ConfigError(src(err.key), err.key, err.message)
    throw err
  }
}

function validateWhole(cfg: MxgateConfig, values: Map<string, RawValue>): void {
  const src = (key: string) => values.get(key)?.source ?? 'built-in default'
  if (cfg.smtp.authservIds.length === 0) cfg.smtp.authservIds = [cfg.smtp.hostname.toLowerCase()]
  if (cfg.smtp.maxConnectionsPerIp > cfg.smtp.maxConnections) {
    throw new ConfigError(
      src('smtp.max_connections_per_ip'),
      'smtp.max_connections_per_ip',
      `must not be above max_connections (${cfg.smtp.maxConnections})`,
    )
  }
  if (cfg.backends.length === 0) {
    throw new ConfigError(
      cfg.files.at(-1) ?? 'built-in default',
      'backends',
      'no backends configured; add a [backend.ID] section with address = host:port, or set MXGATE_BACKENDS',
    )
  }
  if (cfg.smtp.domains.length === 0) {
    throw new ConfigError(
      src('smtp.domains'),
      'smtp.domains',
      'no domains configured; mxgate accepts mail only for these, e.g. domains = example.com, or set MXGATE_DOMAINS',
    )
  }
  if (cfg.breaker.maxEjectionMs < cfg.breaker.ejectionMs) {
    throw new ConfigError(
      src('breaker.max_ejection_time'),
      'breaker.max_ejection_time',
      'must not be below ejection_time',
    )
  }
  const detector = checkDetector(cfg)
  if (detector !== null) throw new ConfigError(src(detector.key), detector.key, detector.problem)
  const verify = checkVerify(cfg)
  if (verify !== null) throw new ConfigError(src(verify.key), verify.key, verify.problem)
  const canary = checkCanary(cfg)
  if (canary !== null) throw new ConfigError(src(canary.key), canary.key, canary.problem)
  if (cfg.spool.retryMaxMs < cfg.spool.retryFirstMs) {
    throw new ConfigError(src('spool.retry_max'), 'spool.retry_max', 'must not be below retry_first')
  }
  if (!isLoopback(cfg.admin.listen.host) && cfg.admin.token === null) {
    throw new ConfigError(
      src('admin.listen'),
      'admin.listen',
      'the admin API listens beyond loopback without a token; set admin.token (or MXGATE_ADMIN_TOKEN) or bind to 127.0.0.1',
    )
  }
}
