// How an envelope's addresses go on the wire to one backend: as the sender wrote them when the backend offers
// SMTPUTF8 (RFC 6531); otherwise an internationalised domain goes as A-labels (RFC 5890, punycode), which every
// SMTP server takes, and only a non-ASCII local part, which has no ASCII form, cannot go at all.
import { domainToASCII } from 'node:url'
import type { Envelope } from '../message'

const NON_ASCII = /[^\p{ASCII}]/u

export interface WireEnvelope {
  from: string
  /** In the order of envelope.to, so replies can be matched to the addresses as given. */
  to: string[]
  /** Some address is still non-ASCII: MAIL needs the SMTPUTF8 parameter. */
  smtputf8: boolean
}

/** The address with its domain in A-labels, or null when it has no ASCII form (non-ASCII local part, bad IDN). */
export function asciiAddress(address: string): string | null {
  if (!NON_ASCII.test(address)) return address
  const at = address.lastIndexOf('@')
  if (at < 0) return null
  const local = address.slice(0, at)
  if (NON_ASCII.test(local)) return null
  const domain = domainToASCII(address.slice(at + 1))
  return domain === '' ? null : `${local}@${domain}`
}

/**
 * The envelope as it goes to a backend that does (or does not) offer SMTPUTF8; null when it cannot go to a
 * backend without it. With SMTPUTF8 nothing is rewritten: the backend gets the addresses the sender wrote.
 */
export function wireEnvelope(env: Envelope, smtputf8Offered: boolean): WireEnvelope | null {
  const addresses = [env.from, ...env.to]
  if (!addresses.some((a) => NON_ASCII.test(a))) return { from: env.from, to: env.to, smtputf8: false }
  if (smtputf8Offered) return { from: env.from, to: env.to, smtputf8: true }
  const ascii = addresses.map(asciiAddress)
  if (ascii.some((a) => a === null)) return null
  const [from, ...to] = ascii as string[]
  return { from: from ?? '', to, smtputf8: false }
}
