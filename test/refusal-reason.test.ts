// Refusal reasons from reply texts: Haraka 3.3.4's own replies and mxgate's, each to its bounded label.
import t from 'tap'
import { REFUSAL_REASONS, refusalReason } from '../src/inbound/refusal-reason'

t.test('each reply maps to its reason', async (t) => {
  const cases: Array<[number, string, string | null]> = [
    [250, 'OK', null],
    [354, 'go ahead', null],
    [550, 'Message too big!', 'size'],
    [552, '5.3.4 Message size exceeds fixed maximum message size', 'size'],
    [451, 'Bare line-feed; see https://haraka.github.io/barelf/', 'bare_lf'],
    [554, '5.6.0 Message refused: it contains a bare LF (one not preceded by CR); lines must end in CRLF', 'bare_lf'],
    [554, '5.6.0 Message refused: it contains a NUL byte; lines must end in CRLF', 'bad_bytes'],
    [550, 'Too many received headers - possible mail loop', 'loop'],
    [554, 'Transaction failed due to too many MIME parts', 'mime_parts'],
    [550, '5.7.1 <a@b>: relay access denied; this server accepts mail only for its own domains', 'relay_denied'],
    [452, '4.5.3 Too many recipients (at most 1000 per message)', 'too_many_recipients'],
    [554, '5.5.1 Protocol error: talking before the greeting', 'early_talker'],
    [421, '4.7.0 Too many connections to this server; try again later', 'connection_limit'],
    [421, '4.7.0 Too many messages in one connection (at most 1000); reconnect', 'message_limit'],
    [421, '4.4.2 Idle for too long; closing connection', 'idle_timeout'],
    [421, 'timeout', 'idle_timeout'],
    [421, '4.4.2 DATA slower than 500 bytes/s; closing connection', 'slow_data'],
    [451, '4.3.1 Insufficient system resources for this message now; try again later', 'memory'],
    [421, '4.3.2 Service shutting down; try again later', 'shutting_down'],
    [421, 'PROXY not allowed from 192.0.2.1', 'proxy'],
    [421, 'Invalid PROXY format', 'proxy'],
    [521, 'Command line too long', 'line_too_long'],
    [500, 'Unrecognized command', 'syntax'],
    [501, 'Syntax error', 'syntax'],
    [503, 'MAIL required first', 'syntax'],
    [555, 'Invalid command parameters', 'syntax'],
    [554, 'Your mail is not welcome here', 'other'],
  ]
  for (const [code, text, want] of cases) t.equal(refusalReason(code, text), want, `${code} ${text}`)
  for (const [, , want] of cases) if (want !== null) t.ok(REFUSAL_REASONS.includes(want as never), `${want} is listed`)
})
