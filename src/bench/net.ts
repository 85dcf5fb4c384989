// Loopback ports for the peers and a readiness check that speaks enough SMTP to see a banner.
import net from 'node:net'
import { BenchError } from './errors'

export { freePort } from '../testing/free-port'

/** Connects once and resolves with the first reply line, or rejects on error, close or a short timeout. */
function bannerOnce(port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    let buf = ''
    const end = (err: Error | undefined, line?: string): void => {
      clearTimeout(timer)
      socket.removeAllListeners()
      socket.on('error', () => {})
      if (err === undefined) socket.end('QUIT\r\n')
      else socket.destroy()
      if (err !== undefined) reject(err)
      else resolve(line as string)
    }
    const timer = setTimeout(() => end(new Error('no banner')), timeoutMs)
    socket.on('data', (c: Buffer) => {
      buf += c.toString('latin1')
      const m = /^(\d{3}) [^\n]*\n/m.exec(buf)
      if (m) end(undefined, m[0].trim())
    })
    socket.on('error', (e) => end(e))
    socket.on('close', () => end(new Error('closed before banner')))
  })
}

/**
 * Waits until 127.0.0.1:port answers with a 220 banner; `what` names the peer in the error. `alive` lets the caller
 * stop waiting as soon as the peer's process has died.
 */
export async function waitForBanner(
  port: number,
  what: string,
  timeoutMs: number,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'nothing yet'
  while (Date.now() < deadline) {
    if (!alive()) throw new BenchError('EBENCHSTART', `${what} exited before it answered on 127.0.0.1:${port}`)
    try {
      const line = await bannerOnce(port, 2_000)
      if (line.startsWith('220')) return
      last = line
    } catch (err) {
      last = (err as Error).message
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new BenchError(
    'EBENCHSTART',
    `${what} gave no 220 banner on 127.0.0.1:${port} within ${timeoutMs} ms (${last})`,
  )
}

/** Resolves once nothing accepts connections on 127.0.0.1:port (a peer has let go of it), or after timeoutMs. */
export async function waitPortClosed(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port })
      s.on('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.on('error', () => resolve(false))
    })
    if (!open) return true
    await new Promise((r) => setTimeout(r, 100))
  }
  return false
}
