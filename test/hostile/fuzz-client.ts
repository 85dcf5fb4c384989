// Plays one fuzz dialogue (fuzz-corpus.ts) over a real socket: each step written in random pieces, then the replies
// it should draw awaited (or not, when they never come). Records every byte each way for the checks in fuzz.test.ts.
import net from 'node:net'
import type { Dialogue, Rng } from './fuzz-corpus'

export interface DialogueRun {
  dialogue: Dialogue
  /** Every byte handed to the socket while it was open, in order. */
  written: Buffer
  /** Every byte the server sent. */
  received: Buffer
  /** The code of the reply to each token's final dot, when the dialogue waited for it. */
  dotReplies: Map<string, number>
  /** 'done': every step's replies came; 'stalled': a wait ran out; 'closed': the server hung up first. */
  outcome: 'done' | 'stalled' | 'closed'
}

export interface PlayOptions {
  port: number
  /** How long to wait for the replies a step should draw. */
  stepTimeoutMs: number
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Cuts `bytes` at up to four random points: TCP may deliver any segmentation, so the server must take any. */
function pieces(bytes: Buffer, r: Rng): Buffer[] {
  const cuts = [...new Set(Array.from({ length: Math.floor(r() * 5) }, () => Math.floor(r() * bytes.length)))]
  cuts.sort((a, b) => a - b)
  const out: Buffer[] = []
  let from = 0
  for (const c of cuts) {
    if (c > from) out.push(bytes.subarray(from, c))
    from = Math.max(from, c)
  }
  out.push(bytes.subarray(from))
  return out.filter((p) => p.length > 0)
}

export async function playDialogue(d: Dialogue, r: Rng, opts: PlayOptions): Promise<DialogueRun> {
  const socket = net.connect(opts.port, '127.0.0.1')
  socket.setNoDelay(true)
  const written: Buffer[] = []
  const received: Buffer[] = []
  const finals: number[] = []
  let partial = ''
  let closed = false
  let wake: (() => void) | null = null
  const poke = () => {
    const w = wake
    wake = null
    w?.()
  }
  socket.on('data', (chunk: Buffer) => {
    received.push(chunk)
    partial += chunk.toString('latin1')
    let lf = partial.indexOf('\n')
    while (lf >= 0) {
      const m = /^(\d{3}) /.exec(partial.slice(0, lf))
      if (m) finals.push(Number(m[1]))
      partial = partial.slice(lf + 1)
      lf = partial.indexOf('\n')
    }
    poke()
  })
  socket.on('close', () => {
    closed = true
    poke()
  })
  socket.on('error', () => {
    // A reset or EPIPE while the fuzz client writes is part of the game; 'close' follows.
  })

  /** Resolves true once `n` final reply lines arrived in all, false on close or after the step timeout. */
  const awaitFinals = async (n: number): Promise<boolean> => {
    const until = Date.now() + opts.stepTimeoutMs
    while (finals.length < n && !closed && Date.now() < until) {
      await Promise.race([new Promise<void>((resolve) => (wake = resolve)), sleep(until - Date.now())])
    }
    return finals.length >= n
  }

  const dotReplies = new Map<string, number>()
  let outcome: DialogueRun['outcome'] = 'done'
  let expected = 1 // the greeting
  if (!(await awaitFinals(expected))) outcome = closed ? 'closed' : 'stalled'
  for (const step of outcome === 'done' ? d.steps : []) {
    for (const p of pieces(step.bytes, r)) {
      if (closed || socket.destroyed) break
      socket.write(p)
      written.push(p)
      if (r() < 0.3) await sleep(r() < 0.8 ? 0 : 3)
    }
    expected += step.replies
    if (!(await awaitFinals(expected))) {
      outcome = closed ? 'closed' : 'stalled'
      break
    }
    if (step.endsToken !== undefined) dotReplies.set(step.endsToken, finals[expected - 1] ?? 0)
  }
  if (d.end === 'reset' || outcome === 'stalled') socket.resetAndDestroy()
  else if (d.end === 'close') socket.destroy()
  else {
    // After QUIT's 221 the server closes; do not wait long for it.
    const until = Date.now() + opts.stepTimeoutMs
    while (!closed && Date.now() < until) await Promise.race([new Promise<void>((res) => (wake = res)), sleep(50)])
    socket.destroy()
  }
  return { dialogue: d, written: Buffer.concat(written), received: Buffer.concat(received), dotReplies, outcome }
}

/** The first malformed reply line in what the server sent, or null: every line is `DDD-text` or `DDD text` + CRLF. */
export function malformedReply(received: Buffer): string | null {
  if (received.length === 0) return null
  const text = received.toString('latin1')
  if (!text.endsWith('\r\n')) return `ends without CRLF: ${JSON.stringify(text.slice(-80))}`
  for (const line of text.slice(0, -2).split('\r\n')) {
    if (!/^\d{3}[ -]/.test(line) || /[\r\n]/.test(line)) return JSON.stringify(line.slice(0, 200))
  }
  return null
}
