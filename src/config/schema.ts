// The typed shape of mxgate's settings and their built-in defaults. load.ts fills it from files and environment.
import type { LogSettings } from '../log'
import type { TlsVersion } from './tls'
import type { HostPort } from './units'

export interface BackendConfig {
  id: string
  host: string
  port: number
  /** Relative share of traffic among admitted backends. */
  weight: number
  /** The name its certificate must carry when starttls = required (default: client.tlsServername, else host). */
  servername?: string
}

export interface MxgateConfig {
  /** Files the settings came from, base first: for logs and error messages. */
  files: string[]
  smtp: {
    listen: HostPort
    /** Our name: banner, Received header, EHLO to backends. */
    hostname: string
    /** Haraka worker processes: 0 = one process, N = a cluster master with N workers. */
    workers: number
    /** Domains we accept mail for (lower case). Anything else is refused with 550 5.7.1. */
    domains: string[]
    /** Recipients per message; more get 452 4.5.3 (RFC 5321 §4.5.3.1.8: at least 100). */
    maxRecipients: number
    /** Wait this long before the greeting and refuse a client that talks meanwhile (0 = no wait). */
    greetPauseMs: number
    /**
     * Authentication-Results ids (lower case) that only our side may write: such fields arriving from a sender are
     * renamed (RFC 8601 §5). Empty in the file means [hostname].
     */
    authservIds: string[]
    /** Open SMTP connections in all and per client address; beyond them a new connection gets 421 4.7.0. */
    maxConnections: number
    maxConnectionsPerIp: number
    /** Transactions per connection; the next MAIL gets 421 4.7.0 and the connection closes. */
    maxMessagesPerConnection: number
    /**
     * 5xx replies to commands (the client's mistakes) a connection may earn without delivering a message; the last is followed
     * by 421 4.7.0 and the connection closes (Postfix's smtpd_hard_error_limit). 0 = no limit.
     */
    maxErrors: number
    /**
     * NOOP, RSET, VRFY, HELP, EXPN and ETRN a connection may send without delivering a message; each one beyond
     * counts as an error (Postfix's smtpd_junk_command_limit), so a client that only keeps a connection alive is
     * sent away in the end. 0 = no limit.
     */
    maxJunkCommands: number
    /** A connection that says nothing for this long is closed (RFC 5321 §4.5.3.2.7: at least 5 minutes). */
    idleTimeoutMs: number
    /** The whole DATA phase; and the rate floor (bytes/s) that applies after `dataRateGraceMs` of it. */
    dataTimeoutMs: number
    minDataRate: number
    dataRateGraceMs: number
    /** Message bytes held in memory across all connections; beyond it the message gets 451 4.3.1. */
    maxMessageMemory: number
    /**
     * On SIGTERM/SIGINT: /readyz fails at once, and the listener keeps taking connections this long so the load
     * balancer stops sending first; then it closes.
     */
    shutdownGraceMs: number
    /**
     * After the listener closes: how long transactions in DATA and deliveries in flight may take before the process
     * exits anyway (a sender cut off then never had its 250, so it keeps the message).
     */
    shutdownTimeoutMs: number
    /**
     * Load balancers ("address/prefix") whose connections must start with a PROXY protocol header carrying the real
     * client's address; from anyone else a PROXY header is refused. Empty = none.
     */
    proxyHosts: string[]
  }
  /** Inbound STARTTLS. */
  tls: {
    /** Certificate chain and private key files (absolute once loaded); null = STARTTLS is not offered. */
    cert: string | null
    key: string | null
    /** Lowest protocol version a sender may negotiate. */
    minVersion: TlsVersion
  }
  relay: {
    /** A message's whole journey through backends before it is spooled (or 451-ed). */
    deadlineMs: number
    /** Backends tried for one message before giving up inline. */
    maxAttempts: number
    /** Ask a second backend about an ambiguous 5xx before passing it to the sender. */
    secondOpinion: boolean
    /** Permanent, message-looking refusals a second backend confirms before the sender hears them. */
    confirmPermanent: Array<'5.1' | '5.2' | '5.6' | 'X.3.4'>
  }
  backends: BackendConfig[]
  client: {
    maxSessions: number
    /**
     * How long a delivery waits for one of a backend's maxSessions when all are busy before trying another backend
     * (and, when all are busy, the spool). Waiting on mxgate's own limit is no one's fault: never charged.
     */
    sessionWaitMs: number
    maxMessagesPerSession: number
    idleTimeoutMs: number
    timeouts: {
      connect: number
      banner: number
      ehlo: number
      starttls: number
      mail: number
      rcpt: number
      data: number
      dot: number
      rset: number
      quit: number
    }
    /**
     * off; opportunistic = encrypt when offered, without verifying (RFC 7435); required = encrypt and verify the
     * certificate against tlsCa (or the system CAs) and the backend's name, else a backend fault.
     */
    starttls: 'off' | 'opportunistic' | 'required'
    /** PEM file of the CAs (or self-signed certificates) backend certificates are verified against; null = system CAs. */
    tlsCa: string | null
    /** The name every backend's certificate must carry (a backend's own servername wins); null = its host. */
    tlsServername: string | null
  }
  breaker: {
    /** Backend-fault percentage over the window above which the breaker opens (the backend is ejected). */
    errorThresholdPercent: number
    windowMs: number
    windowBuckets: number
    /** Attempts in the window before the breaker may open at all. */
    minVolume: number
    /** First ejection; each repeat within `repeatResetMs` doubles it up to `maxEjectionMs`. */
    ejectionMs: number
    maxEjectionMs: number
    repeatResetMs: number
    /** After re-admission the backend's share ramps from `probationShare` to 100% over this time. */
    slowStartMs: number
    /** Share of its weight a backend starts probation with (0–1). */
    probationShare: number
    /** Good messages a backend must carry (besides `slowStartMs`) before probation ends. */
    probationMessages: number
    /** How long a probe (banner, EHLO, NOOP, QUIT) may take. */
    probeTimeoutMs: number
  }
  /** The outlier detector for soft failures (src/health/detector.ts; README "How the detector decides"). */
  detector: {
    mode: 'enforce' | 'observe'
    /** CUSUM threshold h in normal rotation, and during probation (stricter). */
    threshold: number
    probationThreshold: number
    /** Share of h at which a backend counts as suspect (its 5xx are confirmed elsewhere). */
    warningShare: number
    /** p1 = max(ratio·p0, p0 + margin); p0 = the rest of the pool's rate, at least `floor`. */
    ratio: number
    margin: number
    floor: number
    minFaults: number
    /** Messages the rest of the pool must have carried in the window before anyone is compared with it. */
    minReference: number
    /** Share of the pool the detector may have out at once (at least one backend). */
    budgetShare: number
    /** Pool degraded when more than half of the backends fail at least this share. */
    degradedRate: number
    refusalSignal: boolean
    /** Outcome bucket length (also the evaluation period) and how long buckets are kept (the reference window). */
    bucketMs: number
    retentionMs: number
  }
  admin: {
    listen: HostPort
    token: string | null
    /**
     * Where `mxgate start` keeps the admin token it generates when `token` is null (mode 0600, created at first
     * start); null = `<spool.dir>/admin.token`. See adminTokenFile().
     */
    tokenFile: string | null
  }
  spool: {
    dir: string
    /** Over any limit new mail gets 451 4.3.4 and /readyz fails. */
    maxMessages: number
    maxBytes: number
    minFreeBytes: number
    /** Off only for tests and benchmarks: without fsync a crash can lose mail that was answered 250. */
    fsync: boolean
    /** Retry backoff: first delay, doubling to the cap, with jitter. */
    retryFirstMs: number
    retryMaxMs: number
    /** How long a message may stay in the spool before `onExpiry` applies. */
    lifetimeMs: number
    onExpiry: 'hold' | 'bounce'
    /** Spool deliveries started per second per node (so a recovering backend is not flooded). */
    drainRate: number
    /** Spool deliveries in flight at once per node (live mail always has the rest). */
    concurrency: number
    /** Where delivery status notifications go (a smarthost that relays to the internet); null = hold instead. */
    bounceRelay: HostPort | null
    /**
     * Messages held only because their DSN could not be sent (no bounce relay, or it refused): at most this many,
     * oldest dropped first. They do not count toward maxMessages/maxBytes. 0 = never hold, drop at once.
     */
    heldDsnMax: number
    /** A message held only for its DSN is dropped (its DSN given up, logged) after this long. */
    heldDsnLifetimeMs: number
  }
  /** The replay journal: what every backend took, kept for replay after an incident (README "The replay journal"). */
  journal: {
    enabled: boolean
    /** null = `<spool.dir>/journal`. See journalDir(). */
    dir: string | null
    /** Entries older than this are removed (whole segments, oldest first). */
    retentionMs: number
    /** The journal never holds more than the smaller of maxBytes and diskShare of the space it could use. */
    maxBytes: number
    diskShare: number
    /** How long an entry may wait in memory before its batch is written (one write, one fsync per batch). */
    batchMs: number
  }
  redis: {
    url: string | null
    prefix: string
  }
  /** One log stream: mxgate's lines and Haraka's, one JSON format, one level (see src/haraka/haraka-log.ts). */
  log: LogSettings
  /** Recipient verification at RCPT (src/verify/; README "Recipient verification"). */
  verify: {
    enabled: boolean
    /** MAIL FROM of the check; filled at load with double-bounce@<first domain> when not set. */
    sender: string
    /** How long a backend's "exists" and its confirmed "no such user" are believed. */
    positiveTtlMs: number
    negativeTtlMs: number
    /** Verdicts kept in this process's memory (least recently used dropped first). */
    cacheSize: number
    /** The whole check, every backend asked included; then `onTimeout`. */
    timeoutMs: number
    /** No backend answered in time: take the recipient (delivery decides later) or answer 450 4.4.3. */
    onTimeout: 'accept' | 'defer'
    /** Unknown-recipient refusals per client address per window before 421 and disconnect; 0 = no limit. */
    harvestLimit: number
    harvestWindowMs: number
    /** Domains whose recipients are taken unchecked. */
    skipDomains: string[]
    /** Addresses (lower case) answered from this list, not the backends: every domain named here. */
    staticRecipients: string[]
  }
  /** End-to-end canaries (src/canary/; README "Canaries"). Off while `address` is null. */
  canary: {
    /** Where canaries are sent through each backend: a mailbox in one of our domains; null = canaries off. */
    address: string | null
    /** The address the canary mailbox forwards to; mxgate takes it on its listener and never relays it. Null = none. */
    returnAddress: string | null
    /** A canary per backend this often. */
    intervalMs: number
    /** A canary not back this long after its 250 is lost. */
    timeoutMs: number
    /** Bearer token of POST /api/canaries/TOKEN (not the admin token); null = the webhook is refused. */
    webhookToken: string | null
    /** Canaries a backend in probation must return before it is fully admitted (0 = none). */
    probationReturns: number
  }
}

export const DEFAULTS: Omit<MxgateConfig, 'files'> = {
  smtp: {
    listen: { host: '127.0.0.1', port: 2525 },
    hostname: 'mxgate.localdomain',
    workers: 0,
    domains: [],
    maxRecipients: 1000,
    greetPauseMs: 0,
    authservIds: [],
    maxConnections: 1000,
    maxConnectionsPerIp: 50,
    maxMessagesPerConnection: 1000,
    maxErrors: 20,
    maxJunkCommands: 100,
    idleTimeoutMs: 300_000,
    dataTimeoutMs: 600_000,
    minDataRate: 500,
    dataRateGraceMs: 30_000,
    maxMessageMemory: 512 * 1024 ** 2,
    shutdownGraceMs: 5_000,
    // Above the relay deadline (30 s): a message relayed when the listener closes gets its reply, or is spooled.
    shutdownTimeoutMs: 40_000,
    proxyHosts: [],
  },
  // TLSv1.2: the oldest Node's OpenSSL allows by default, and what RFC 8996 asks for; Postfix still accepts TLSv1.
  tls: { cert: null, key: null, minVersion: 'TLSv1.2' },
  relay: { deadlineMs: 30_000, maxAttempts: 3, secondOpinion: true, confirmPermanent: ['5.1', '5.2', '5.6', 'X.3.4'] },
  backends: [],
  client: {
    maxSessions: 50,
    // A session carries a message in milliseconds (2.3 ms/msg median in bench/README.md, ~100 ms for a slow
    // backend), so a queue that has not moved in 1 s is not a burst any more: better to use another backend or the
    // spool than to spend the 30 s deadline in line.
    sessionWaitMs: 1_000,
    maxMessagesPerSession: 1000,
    idleTimeoutMs: 30_000,
    timeouts: {
      connect: 5_000,
      banner: 10_000,
      ehlo: 10_000,
      starttls: 10_000,
      mail: 10_000,
      rcpt: 10_000,
      data: 10_000,
      dot: 30_000,
      rset: 5_000,
      quit: 2_000,
    },
    starttls: 'opportunistic',
    tlsCa: null,
    tlsServername: null,
  },
  breaker: {
    errorThresholdPercent: 50,
    windowMs: 10_000,
    windowBuckets: 10,
    minVolume: 5,
    ejectionMs: 30_000,
    maxEjectionMs: 600_000,
    repeatResetMs: 900_000,
    slowStartMs: 30_000,
    probationShare: 0.05,
    probationMessages: 100,
    probeTimeoutMs: 15_000,
  },
  detector: {
    mode: 'enforce',
    threshold: 16,
    probationThreshold: 8,
    warningShare: 0.5,
    ratio: 3,
    margin: 0.025,
    floor: 0.001,
    minFaults: 8,
    minReference: 200,
    budgetShare: 1 / 3,
    degradedRate: 0.05,
    refusalSignal: true,
    bucketMs: 10_000,
    retentionMs: 600_000,
  },
  admin: { listen: { host: '127.0.0.1', port: 8025 }, token: null, tokenFile: null },
  spool: {
    dir: './spool',
    maxMessages: 100_000,
    maxBytes: 10 * 1024 ** 3,
    minFreeBytes: 1024 ** 3,
    fsync: true,
    retryFirstMs: 60_000,
    retryMaxMs: 1_800_000,
    lifetimeMs: 5 * 86_400_000,
    onExpiry: 'hold',
    drainRate: 50,
    concurrency: 8,
    bounceRelay: null,
    heldDsnMax: 1000,
    heldDsnLifetimeMs: 3 * 86_400_000,
  },
  journal: {
    enabled: true,
    dir: null,
    retentionMs: 48 * 3_600_000,
    maxBytes: 10 * 1024 ** 3,
    diskShare: 0.25,
    batchMs: 50,
  },
  redis: { url: null, prefix: 'mxgate:' },
  log: { level: 'info', redactAddresses: false },
  verify: {
    enabled: true,
    sender: '',
    positiveTtlMs: 86_400_000,
    negativeTtlMs: 3_600_000,
    cacheSize: 100_000,
    timeoutMs: 5_000,
    onTimeout: 'accept',
    harvestLimit: 20,
    harvestWindowMs: 600_000,
    skipDomains: [],
    staticRecipients: [],
  },
  canary: {
    address: null,
    returnAddress: null,
    intervalMs: 10_000,
    timeoutMs: 120_000,
    webhookToken: null,
    probationReturns: 1,
  },
}
