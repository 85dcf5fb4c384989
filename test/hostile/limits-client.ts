// A raw-socket SMTP client for the limits tests (limits.test.ts): every reply line kept, replies taken in order, and
// bounded waits for a reply, a line matching a pattern, or the server's close. It speaks only what a test writes.
import net from 'node:net'

export interface Client {
  socket: net.Socket
  /** Complete reply lines so far. */
  lines: string[]
  closed: Promise<void>
  /** Resolves once the server closed the connection; rejects after 15 s. */
  waitClosed(): Promise<void>
  /** Resolves with the first reply line matching `re`, seen before or after the call. */
  waitFor(re: RegExp): Promise<string>
  /** The next final reply line ("DDD text") not yet taken by reply(), in order; rejects on close or after 15 s. */
  reply(): Promise<string>
}

const WAIT_MS = 15_000

/** Connects from the loopback address `localAddress` (Linux routes all of 127/8 to lo). */
export function connect(port: number, localAddress = '127.0.0.1'): Client {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress })
  socket.setNoDelay(true)
  const lines: string[] = []
  let buf = ''
  let isClosed = false
  /** Called on every new line and on close. */
  const listeners = new Set<() => void>()
  socket.on('data', (d: Buffer) => {
    buf += d.toString('latin1')
    for (let i = buf.indexOf('\r\n'); i !== -1; i = buf.indexOf('\r\n')) {
      lines.push(buf.slice(0, i))
      buf = buf.slice(i + 2)
      for (const l of [...listeners]) l()
    }
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      isClosed = true
      for (const l of [...listeners]) l()
      resolve()
    }),
  )
  /** Resolves with `found()` once it is not undefined; rejects after WAIT_MS, or on close when `failOnClose`. */
  const when = <T>(found: () => T | undefined, what: string, failOnClose: boolean) =>
    new Promise<T>((resolve, reject) => {
      const check = () => {
        const v = found()
        if (v !== undefined) done(() => resolve(v))
        else if (failOnClose && isClosed)
          done(() => reject(new Error(`closed before ${what}; got ${JSON.stringify(lines)}`)))
      }
      const timer = setTimeout(() => done(() => reject(new Error(`no ${what}; got ${JSON.stringify(lines)}`))), WAIT_MS)
      const done = (settle: () => void) => {
        clearTimeout(timer)
        listeners.delete(check)
        settle()
      }
      listeners.add(check)
      check()
    })
  let taken = 0
  return {
    socket,
    lines,
    closed,
    waitClosed: () => when(() => (isClosed ? true : undefined), 'close', false).then(() => undefined),
    waitFor: (re) => when(() => lines.find((l) => re.test(l)), `reply matching ${re}`, false),
    reply: () =>
      when(
        () => {
          for (; taken < lines.length; taken++) {
            const line = lines[taken] as string
            if (/^\d{3} /.test(line)) {
              taken++
              return line
            }
          }
          return undefined
        },
        'reply',
        true,
      ),
  }
}

/** Writes `command` and resolves its reply; throws unless the reply has the expected code. */
export async function command(c: Client, command: string, code: number): Promise<string> {
  c.socket.write(`${command}\r\n`)
  const reply = await c.reply()
  if (!reply.startsWith(`${code} `)) throw new Error(`${command.split('\r\n')[0]} → ${reply}, expected ${code}`)
  return reply
}

/** One message in lockstep (MAIL, RCPT, DATA, the content and its dot) on an open session: its 250 and how long it took. */
export async function sendTimed(c: Client, subject: string): Promise<{ reply: string; ms: number }> {
  const began = performance.now()
  await command(c, 'MAIL FROM:<s@remote.test>', 250)
  await command(c, 'RCPT TO:<a@example.com>', 250)
  await command(c, 'DATA', 354)
  c.socket.write(`Subject: ${subject}\r\n\r\nhi\r\n.\r\n`)
  const reply = await c.reply()
  return { reply, ms: performance.now() - began }
}
