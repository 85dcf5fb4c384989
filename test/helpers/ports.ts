export { freePort } from '../../src/testing/free-port'

/** Polls `cond` every 20 ms until it holds or `ms` passes; resolves whether it held. */
export async function waitFor(cond: () => boolean, ms = 5000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 20))
  }
  return cond()
}
