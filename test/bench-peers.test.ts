import t from 'tap'
import { harakaConfig } from '../src/bench/haraka'
import { privateMainCf, privateMasterCf } from '../src/bench/postfix'

const STOCK = `# comment smtp inet
smtp      inet  n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
postlog   unix-dgram n  -       n       -       1       postlogd`

t.test('the private master.cf listens on the given loopback port and runs nothing chrooted', async (t) => {
  const lines = privateMasterCf(STOCK, 40026).split('\n')
  t.equal(lines[1], '127.0.0.1:40026 inet n - n - - smtpd')
  t.equal(lines[2], '#submission inet n       -       y       -       -       smtpd', 'comments are kept as they are')
  t.equal(lines[3], 'pickup unix n - n 60 1 pickup')
  t.equal(lines[5], '        -o syslog_name=postfix/$service_name', 'option lines are kept')
  t.equal(lines[6], 'postlog unix-dgram n - n - 1 postlogd')
})

t.test('the private main.cf keeps every path under the temp dir and relays to the sink', async (t) => {
  const cf = privateMainCf('/tmp/pf1', 40025)
  t.match(cf, /^queue_directory = \/tmp\/pf1\/queue$/m)
  t.match(cf, /^data_directory = \/tmp\/pf1\/data$/m)
  t.match(cf, /^maillog_file = \/tmp\/pf1\/maillog$/m)
  t.match(cf, /^maillog_file_prefixes = \/tmp\/pf1$/m, 'Postfix refuses a maillog_file outside the prefixes')
  t.match(cf, /^relayhost = \[127\.0\.0\.1\]:40025$/m)
  t.match(cf, /^inet_interfaces = 127\.0\.0\.1$/m)
  t.match(cf, /^mydestination =$/m, 'the bench domain is relayed, not delivered locally')
  t.notMatch(cf, /fsync/, 'fsync stays at its default (on)')
})

t.test('the Haraka instance: one process on loopback, the bench domain, smtp_forward to the sink', async (t) => {
  const c = harakaConfig(40027, 40025, 'bench.example')
  t.equal(c['smtp.ini'], 'listen=127.0.0.1:40027\nnodes=0\n')
  t.equal(c.plugins, 'rcpt_to.in_host_list\nqueue/smtp_forward\n')
  t.equal(c.host_list, 'bench.example\n')
  t.equal(c['smtp_forward.ini'], 'host=127.0.0.1\nport=40025\n')
  t.equal(c['log.ini'], '[main]\nlevel=warn\n', "the log level mxgate's own Haraka runs at")
})
