// A tiny disk that really fills up (a tmpfs of a given size), the same way for root and for other users: it is
// mounted inside a private user + mount namespace held open by a child process, and reached from outside through
// /proc/PID/root. Whoever owns that namespace (the user running the tests) may use the path, so mxgate processes
// the test starts can use it as their spool directory too. The namespace, and the mount with it, goes away when
// the holder ends: at teardown, or with the test process however that ends, so no mount is ever left behind.
//
// Where user namespaces are not allowed (some hardened kernels) it mounts in place when it may (root), and
// otherwise says why it cannot, so a test can skip with that reason. MXGATE_TEST_REQUIRE_TMPFS=1 (set by .ci/run)
// turns that skip into a failure, so CI never passes without having filled a disk.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { reap } from './reaper'

const TMPFS_MAGIC = 0x01021994
const READY_MS = 10_000

export type TinyDisk = { path: string; how: string } | { path: null; why: string }

/** Mounts a tmpfs of `size` (e.g. '256k') for this test; removed at teardown. */
export async function tinyDisk(t: Test, size: string): Promise<TinyDisk> {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'mxgate-tiny-disk-'))
  const dir = path.join(parent, 'disk')
  fs.mkdirSync(dir)
  t.teardown(() => fs.rmSync(parent, { recursive: true, force: true }))

  const held = await inNamespace(t, dir, size)
  if (typeof held !== 'string') return held
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' })
  } catch (err) {
    const why =
      `cannot mount a tmpfs: a user namespace was refused (${held}) and mounting in place too ` +
      `(${firstLine(err)}); allow unprivileged user namespaces or run as root`
    if (process.env.MXGATE_TEST_REQUIRE_TMPFS === '1') throw new Error(`${why} (MXGATE_TEST_REQUIRE_TMPFS=1)`)
    return { path: null, why }
  }
  // Lazy: a process that still has a file open there cannot keep the mount alive.
  t.teardown(() => {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' })
    } catch (err) {
      t.comment(`umount ${dir}: ${firstLine(err)}`)
    }
  })
  return { path: checked(dir), how: 'mounted in place' }
}

/** The disk through a namespace holder, or why that was refused. */
async function inNamespace(t: Test, dir: string, size: string): Promise<TinyDisk | string> {
  let holder: ChildProcess
  try {
    holder = reap(
      spawn(
        'unshare',
        [
          '--user',
          '--map-root-user',
          '--mount',
          'sh',
          '-c',
          // `cat` keeps the namespace alive until its stdin closes: at teardown, or when this process dies.
          'mount -t tmpfs -o "size=$1" tmpfs "$2" && echo ready && exec cat',
          'sh',
          size,
          dir,
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      ),
    )
  } catch (err) {
    return firstLine(err)
  }
  const exited = once(holder, 'exit').catch(() => undefined)
  let stderr = ''
  holder.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  holder.on('error', (err) => {
    stderr += err.message
  })
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), READY_MS)
    holder.stdout?.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer)
        resolve(true)
      }
    })
    holder.once('exit', () => {
      clearTimeout(timer)
      resolve(false)
    })
    holder.once('error', () => {
      clearTimeout(timer)
      resolve(false)
    })
  })
  const stop = async () => {
    holder.stdin?.end()
    if (holder.exitCode === null && holder.signalCode === null) holder.kill('SIGKILL')
    await exited
  }
  if (!ready || holder.pid === undefined) {
    await stop()
    return stderr.trim().split('\n')[0] || `unshare gave no ready line within ${READY_MS} ms`
  }
  t.teardown(stop)
  return { path: checked(`/proc/${holder.pid}/root${dir}`), how: 'in a private user and mount namespace' }
}

/** Refuse to go on with a path that is not the tmpfs: a test would then fill the real disk and never see it full. */
function checked(p: string): string {
  const type = fs.statfsSync(p).type
  if (type !== TMPFS_MAGIC) throw new Error(`${p} is not a tmpfs (statfs type 0x${type.toString(16)})`)
  return p
}

function firstLine(err: unknown): string {
  const e = err as { stderr?: Buffer; message?: string }
  return (e.stderr?.toString().trim() || e.message || String(err)).split('\n')[0] ?? ''
}

/** Fills the file system holding `dir` to the last block with one file; returns a function that removes it. */
export function fillDisk(dir: string): () => void {
  const file = path.join(dir, '..', 'filler')
  const fd = fs.openSync(file, 'w')
  const chunk = Buffer.alloc(4096, 0x78)
  try {
    // Bounded: a tmpfs of a few hundred KiB is full after a few hundred chunks.
    for (let i = 0; i < 1_000_000; i++) fs.writeSync(fd, chunk)
    throw new Error(`fillDisk: ${dir} did not fill up`)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
  } finally {
    fs.closeSync(fd)
  }
  return () => fs.rmSync(file, { force: true })
}
