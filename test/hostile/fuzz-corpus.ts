// SMTP dialogues for the fuzz run (fuzz.test.ts): a seeded generator of valid dialogues — the seed corpus — and
// mutations of them. Pure: a seed in, steps of bytes out; the socket side is fuzz-client.ts.

/** One write (in as many pieces as the client likes) and how many complete replies to await after it. */
export interface Step {
  bytes: Buffer
  replies: number
  /** The token of the message whose final `<CRLF>.<CRLF>` this step writes (clean dialogues only). */
  endsToken?: string
}

export interface Dialogue {
  id: number
  steps: Step[]
  /** Tokens carried by messages in this dialogue, in order. */
  tokens: string[]
  /** Which mutations were applied (empty for a clean dialogue from the corpus). */
  mutations: string[]
  /** After the last step: QUIT and wait, close, or reset (RST). */
  end: 'quit' | 'close' | 'reset'
}

export type Rng = () => number

/** mulberry32: small, seedable, good enough to pick cases. */
export function rng(seed: number): Rng {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const int = (r: Rng, min: number, max: number) => min + Math.floor(r() * (max - min + 1))
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T
const ascii = (s: string) => Buffer.from(s, 'latin1')

/** Recipients mxgate takes (domain example.com, see fuzz.test.ts) and ones it refuses at RCPT. */
const GOOD_RCPTS = [
  '<user@example.com>',
  '<First.Last@EXAMPLE.com>',
  '<"john doe"@example.com>',
  '<postmaster>',
  '<a+tag@example.com>',
]
const BAD_RCPTS = [
  '<user%other.test@example.com>',
  '<other!user@example.com>',
  '<"user@other.test"@example.com>',
  '<@relay.test:user@example.com>',
  '<user@other.test>',
  '<>',
  'user@example.com',
  '<user@example.com',
]
const SENDERS = [
  '<sender@sender.test>',
  '<>',
  '<"odd sender"@sender.test>',
  '<s@sender.test> SIZE=2048',
  '<s@sender.test> BODY=8BITMIME',
]

/** A message body line of one kind: plain, dot-stuffed, 8-bit, long, or empty. */
function bodyLine(r: Rng): Buffer {
  switch (int(r, 0, 7)) {
    case 0:
      return ascii('..\r\n') // a line that is a lone dot, stuffed
    case 1:
      return ascii(`..leading dot ${int(r, 0, 999)}\r\n`)
    case 2:
      return Buffer.concat([ascii('8-bit: '), Buffer.from([0xe9, 0xff, 0x80, 0xc3, 0xa9]), ascii('\r\n')])
    case 3:
      return ascii(`${'L'.repeat(int(r, 900, 20_000))}\r\n`)
    case 4:
      return ascii('\r\n')
    default:
      return ascii(`body line ${int(r, 0, 1e6)} with some words in it\r\n`)
  }
}

function message(r: Rng, token: string): Buffer {
  const head = ascii(`X-Fuzz-Token: ${token}\r\nMessage-ID: <${token}@fuzz.test>\r\nSubject: fuzz ${token}\r\n\r\n`)
  const lines = Array.from({ length: int(r, 0, 12) }, () => bodyLine(r))
  // Now and then a message mxgate must refuse whole (554 5.6.0): the clean run then proves refusals stay away too.
  if (r() < 0.08) lines.push(ascii(pick(r, ['a bare CR\r here\r\n', 'a NUL \0 here\r\n'])))
  return Buffer.concat([head, ...lines, ascii('.\r\n')])
}

/** A valid dialogue: greeting, 0-3 transactions (pipelined or in lockstep), NOOP/RSET between, QUIT or a close. */
export function cleanDialogue(seed: number, id: number): Dialogue {
  const r = rng(seed * 100_003 + id)
  const steps: Step[] = []
  const tokens: string[] = []
  const esmtp = r() < 0.8
  steps.push({ bytes: ascii(`${esmtp ? 'EHLO' : 'HELO'} client${id}.fuzz.test\r\n`), replies: 1 })
  const pipelining = esmtp && r() < 0.5
  const transactions = int(r, 0, 3)
  for (let n = 0; n < transactions; n++) {
    if (r() < 0.3) steps.push({ bytes: ascii(pick(r, ['NOOP\r\n', 'RSET\r\n', 'NOOP hello\r\n'])), replies: 1 })
    const rcpts = [
      pick(r, GOOD_RCPTS),
      ...Array.from({ length: int(r, 0, 2) }, () => pick(r, r() < 0.5 ? GOOD_RCPTS : BAD_RCPTS)),
    ]
    const envelope = [
      `MAIL FROM:${pick(r, esmtp ? SENDERS : SENDERS.slice(0, 3))}\r\n`,
      ...rcpts.map((x) => `RCPT TO:${x}\r\n`),
    ]
    const token = `s${seed}-d${id}-m${n}`
    if (r() < 0.15) {
      // A transaction given up before DATA; in one write only where PIPELINING was offered (after HELO it was not:
      // a command sent while an RCPT is still being verified is refused as unauthorized pipelining, as Postfix 3.9).
      if (pipelining) steps.push({ bytes: ascii(`${envelope.join('')}RSET\r\n`), replies: envelope.length + 1 })
      else for (const c of [...envelope, 'RSET\r\n']) steps.push({ bytes: ascii(c), replies: 1 })
      continue
    }
    if (pipelining) steps.push({ bytes: ascii(`${envelope.join('')}DATA\r\n`), replies: envelope.length + 1 })
    else {
      for (const c of envelope) steps.push({ bytes: ascii(c), replies: 1 })
      steps.push({ bytes: ascii('DATA\r\n'), replies: 1 })
    }
    steps.push({ bytes: message(r, token), replies: 1, endsToken: token })
    tokens.push(token)
  }
  const end = r() < 0.8 ? 'quit' : pick(r, ['close', 'reset'] as const)
  if (end === 'quit') steps.push({ bytes: ascii('QUIT\r\n'), replies: 1 })
  return { id, steps, tokens, mutations: [], end }
}

/** Lines a hostile or broken client sends as commands. */
const GARBAGE = [
  'XYZZY\r\n',
  'MAIL FROM:<<<>>>\r\n',
  'RCPT TO:\r\n',
  'DATA\r\n',
  'BDAT 10 LAST\r\n',
  'AUTH PLAIN AGFhAGI=\r\n',
  'STARTTLS\r\n',
  'VRFY root\r\n',
  'HELP\r\n',
  `${'A'.repeat(3000)}\r\n`,
  'mail from:<lower@case.test>\r\n',
  '\r\n',
  '\x00\xff\xfe\r\n',
  'EHLO\r\n',
  'QUIT extra words\r\n',
]

type Mutation = (r: Rng, d: Dialogue) => string

function randomStep(r: Rng, d: Dialogue): Step | undefined {
  return d.steps.length === 0 ? undefined : pick(r, d.steps)
}

function splice(step: Step, at: number, remove: number, insert: Buffer): void {
  step.bytes = Buffer.concat([step.bytes.subarray(0, at), insert, step.bytes.subarray(at + remove)])
}

/** A recipient built from the characters that route mail on some servers, quoted or not, at our domain or not. */
function oddRecipient(r: Rng): string {
  const alphabet = 'ab.%!@"\\()<>,:; +=\u00e9'
  const local = Array.from({ length: int(r, 1, 12) }, () => alphabet[int(r, 0, alphabet.length - 1)]).join('')
  const quoted = r() < 0.4 ? `"${local}"` : local
  const domain = pick(r, [
    'example.com',
    'EXAMPLE.COM.',
    'evil.test',
    '[127.0.0.1]',
    'example.com.evil.test',
    'evil.test@example.com',
  ])
  const route = r() < 0.15 ? '@relay.test:' : ''
  return `<${route}${quoted}@${domain}>`
}

const MUTATIONS: Record<string, Mutation> = {
  'odd recipient': (r, d) => {
    const s = d.steps.find((x) => x.bytes.includes('MAIL FROM:'))
    if (s) {
      const at = s.bytes.indexOf('\r\n') + 2
      splice(s, at, 0, ascii(`RCPT TO:${oddRecipient(r)}\r\n`))
      s.replies++
    }
    return 'odd recipient'
  },
  'flip a byte': (r, d) => {
    const s = randomStep(r, d)
    if (s && s.bytes.length > 0) {
      const b = Buffer.from(s.bytes)
      b[int(r, 0, b.length - 1)] = int(r, 0, 255)
      s.bytes = b
    }
    return 'flip a byte'
  },
  'insert CR, LF or NUL': (r, d) => {
    const s = randomStep(r, d)
    if (s) splice(s, int(r, 0, s.bytes.length), 0, ascii(pick(r, ['\r', '\n', '\0', '\r\r', '\n.\n', '\r.\r'])))
    return 'insert CR, LF or NUL'
  },
  'delete a range': (r, d) => {
    const s = randomStep(r, d)
    if (s && s.bytes.length > 0) {
      const at = int(r, 0, s.bytes.length - 1)
      splice(s, at, int(r, 1, Math.min(40, s.bytes.length - at)), Buffer.alloc(0))
    }
    return 'delete a range'
  },
  'garbage command': (r, d) => {
    d.steps.splice(int(r, 0, d.steps.length), 0, { bytes: ascii(pick(r, GARBAGE)), replies: 1 })
    return 'garbage command'
  },
  'smuggle after a dot': (r, d) => {
    const s = d.steps.find((x) => x.endsToken !== undefined)
    if (s) {
      const end = pick(r, ['\r\n.\r\n', '\n.\n', '\r.\r', '\r\n.\n', '\r\n\0.\r\n'])
      const smuggled = ascii(
        `${end}MAIL FROM:<evil@evil.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nX-Smuggled: yes\r\n\r\n`,
      )
      splice(s, Math.max(0, s.bytes.length - 3 - int(r, 0, 10)), 0, smuggled)
    }
    return 'smuggle after a dot'
  },
  'drop the final dot': (_r, d) => {
    const s = d.steps.find((x) => x.endsToken !== undefined)
    if (s) s.bytes = s.bytes.subarray(0, s.bytes.length - 3)
    return 'drop the final dot'
  },
  'cut short': (r, d) => {
    d.steps.length = int(r, 0, d.steps.length)
    const s = d.steps[d.steps.length - 1]
    if (s && s.bytes.length > 1) s.bytes = s.bytes.subarray(0, int(r, 1, s.bytes.length - 1))
    d.end = r() < 0.5 ? 'close' : 'reset'
    return 'cut short'
  },
  'pipeline everything': (_r, d) => {
    // Every step in one write, as a client that never waits would.
    const all = Buffer.concat(d.steps.map((s) => s.bytes))
    const replies = d.steps.reduce((n, s) => n + s.replies, 0)
    d.steps = [{ bytes: all, replies }]
    return 'pipeline everything'
  },
  'swap two steps': (r, d) => {
    if (d.steps.length > 1) {
      const i = int(r, 0, d.steps.length - 2)
      const a = d.steps[i] as Step
      d.steps[i] = d.steps[i + 1] as Step
      d.steps[i + 1] = a
    }
    return 'swap two steps'
  },
  'repeat a step': (r, d) => {
    const i = int(r, 0, Math.max(0, d.steps.length - 1))
    const s = d.steps[i]
    if (s) d.steps.splice(i, 0, { bytes: s.bytes, replies: s.replies })
    return 'repeat a step'
  },
}

/** A corpus dialogue with 1-3 mutations. Mutated steps lose their `endsToken`: what they end is no longer known. */
export function mutatedDialogue(seed: number, id: number): Dialogue {
  const d = cleanDialogue(seed, id)
  const r = rng(seed * 7_919 + id * 31 + 1)
  const names = Object.keys(MUTATIONS)
  for (let n = int(r, 1, 3); n > 0; n--) {
    const name = pick(r, names)
    d.mutations.push((MUTATIONS[name] as Mutation)(r, d))
  }
  for (const s of d.steps) delete s.endsToken
  return d
}

/** Where `stream` ends the DATA that a token starts: true when `<CRLF>.<CRLF>` follows the token in it. */
export function completedAfter(stream: Buffer, token: string): boolean {
  const at = stream.indexOf(ascii(`X-Fuzz-Token: ${token}\r\n`))
  return at >= 0 && stream.indexOf(ascii('\r\n.\r\n'), at) >= 0
}
