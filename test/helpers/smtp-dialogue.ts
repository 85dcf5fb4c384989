// Speaks raw SMTP to a server one command at a time and collects each whole reply, as Postfix's smtpd .ref tests.
import net from 'node:net'

/** Sends each command, waits for its reply line(s), returns the replies in order. */
export async function dialogue(port: number, commands: string[]): Promise<string[]> {
  const s = net.connect(port, '127.0.0.1')
  let buf = ''
  const replies: string[] = []
  const next = () =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply; got so far: ${JSON.stringify(buf)}`)), 10_000)
      const check = () => {
        // A complete reply ends with a line "NNN text" (no dash after the code).
        const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(buf)
        if (!m) return
        buf = buf.slice(m[0].length)
        s.off('data', onData)
        clearTimeout(timer)
        resolve(m[0].trimEnd())
      }
      const onData = (d: Buffer) => {
        buf += d.toString('latin1')
        check()
      }
      s.on('data', onData)
      check()
    })
  replies.push(await next())
  for (const c of commands) {
    s.write(`${c}\r\n`)
    replies.push(await next())
  }
  s.destroy()
  return replies
}
