import { spawn } from 'node:child_process'
import t from 'tap'
import { MemSampler, pssBytes, statFields, treeCpuMs, treeMemBytes, treePids } from '../src/bench/procs'
import { parseSinkCounter } from '../src/bench/sink'

t.test('stat fields are read after the command name, even one with spaces and parentheses', async (t) => {
  const stat = '4242 (smtpd (x) y) S 100 4242 4242 0 -1 4194560 1 0 0 0 7 3 2 1 20 0 1 0'
  const f = statFields(stat)
  t.equal(f[0], 'S', 'state')
  t.equal(f[1], '100', 'ppid')
  t.same([f[11], f[12], f[13], f[14]], ['7', '3', '2', '1'], 'utime stime cutime cstime')
})

t.test('PSS is read from smaps_rollup in bytes', async (t) => {
  t.equal(pssBytes('00400000-7ffd r--p 00000000 00:00 0 [rollup]\nRss: 2048 kB\nPss: 1024 kB\n'), 1024 * 1024)
  t.equal(pssBytes('Rss: 2048 kB\n'), undefined)
})

t.test("smtp-sink's in-place counters give the last message count", async (t) => {
  t.equal(parseSinkCounter('sess=1 quit=1 mesg=1\rsess=2 quit=1 mesg=2\r'), 2)
  t.equal(parseSinkCounter('1234567891011\rsess=20 quit=20 mesg=20\r'), 20)
  t.equal(parseSinkCounter('sess=0'), undefined)
})

t.test('the process tree holds a child, and its CPU and memory are counted', async (t) => {
  const child = spawn(process.execPath, [
    '-e',
    'let x = 0; for (let i = 0; i < 3e7; i++) x += i; setTimeout(() => {}, 5000)',
  ])
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  const pid = child.pid as number
  const sampler = new MemSampler([process.pid], 20)
  // Bounded wait for the child's busy loop to show up as CPU time.
  for (let i = 0; i < 100 && treeCpuMs(pid) < 10; i++) await new Promise((r) => setTimeout(r, 50))
  t.ok(treePids(process.pid).includes(pid), 'the child is in our tree')
  t.ok(treeCpuMs(pid) >= 10, 'its busy loop is counted as CPU time')
  t.ok(treeMemBytes(pid) > 1024 * 1024, 'a node process has more than 1 MB')
  t.ok(sampler.stop() >= treeMemBytes(pid), 'the sampled peak of our tree includes the child')
  t.same(treePids(2 ** 22 + 12345), [], 'a pid that does not exist has an empty tree')
})
