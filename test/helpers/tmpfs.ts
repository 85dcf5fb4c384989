// A real small disk for spool tests: a tmpfs mounted on a temp dir (needs root, as on CI and the dev machines),
// and a filler file that takes every free block and gives them back on demand.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'

/**
 * Mounts a tmpfs of `size` and returns a directory inside it (so removing that directory never touches the mount
 * point). Unmounted (lazily: a process may still hold a file there) and removed at teardown. Null when refused.
 */
export function tinyDisk(t: Test, size: string): string | null {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'mxgate-tmpfs-'))
  const mount = path.join(parent, 'disk')
  fs.mkdirSync(mount)
  let mounted = false
  t.teardown(() => {
    if (mounted) execFileSync('umount', ['-l', mount], { stdio: 'pipe' })
    fs.rmSync(parent, { recursive: true, force: true })
  })
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mount], { stdio: 'pipe' })
    mounted = true
  } catch (err) {
    t.comment(`mount refused: ${(err as Error).message.split('\n')[0]}`)
    return null
  }
  const dir = path.join(mount, 'spool')
  fs.mkdirSync(dir)
  return dir
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
