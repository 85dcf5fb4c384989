// The RCPT hook's verification step: asks the engine's RecipientCheck and answers the sender with its decision.
// Haraka runs one RCPT's hooks at a time; the RCPTs a client pipelined behind it wait in `current_data`, so their
// checks are started here, to run alongside this one.
import constants from 'haraka-constants'
import { clientKey } from '../inbound/client-key'
import { partLogger } from '../log'
import type { VerifyMetrics } from '../verify/metrics'
import { pipelinedRecipients } from '../verify/pipelined'
import type { RecipientCheck } from '../verify/recipient-check'
import type { HarakaAddress, HarakaConnection, Next } from './haraka-types'
import { passBack } from './replies'
import { respondWithCode } from './respond'

const log = partLogger('smtp')

export function verifyRecipient(
  next: Next,
  connection: HarakaConnection,
  rcpt: HarakaAddress,
  check: RecipientCheck,
  metrics: VerifyMetrics | null,
  domains: readonly string[],
): void {
  const ip = connection.remote.ip
  // The harvest guard counts per client: an IPv6 client is its /64 (client-key.ts).
  const client = clientKey(ip)
  check.prefetch(client, pipelinedRecipients(connection.current_data), (d) => domains.includes(d))
  const address = rcpt.address
  check
    .decide(client, { user: rcpt.user ?? '', host: rcpt.host ?? '', address })
    .then((d) => {
      metrics?.decided(d)
      if (d.action === 'accept') {
        if (d.result !== 'known')
          log.info({ ip, rcpt: address, result: d.result, why: d.why }, 'recipient taken unverified')
        next(constants.ok)
        return
      }
      const reply = passBack(d.reply, d.action === 'refuse' ? '5.1.1' : '4.4.3')
      log.info(
        { ip, client, rcpt: address, result: d.result, source: d.source, reply: `${reply.code} ${reply.text}` },
        d.action === 'cutoff' ? 'harvester cut off' : 'recipient refused at RCPT',
      )
      const why = d.action === 'cutoff' ? 'harvest' : d.action === 'refuse' ? 'unknown_recipient' : 'unverified'
      respondWithCode(connection, reply.code, why)
      if (d.action === 'cutoff') next(constants.denysoftdisconnect, reply.text)
      else next(reply.code < 500 ? constants.denysoft : constants.deny, reply.text)
    })
    .catch((err: unknown) => {
      log.error({ err, rcpt: address }, 'recipient check failed unexpectedly')
      next(constants.ok)
    })
}
