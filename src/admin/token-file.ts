// The admin token file: when admin.token is not configured, `mxgate start` generates a token into a file only the
// process owner can read (0600) and the CLI reads it from there. Nothing here logs or returns the token in an error.
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/** The token file cannot be created or read, or anyone but its owner may read it; the message names the file. */
export class TokenFileError extends Error {
  readonly code = 'ETOKENFILE'
  constructor(message: string) {
    super(message)
    this.name = 'TokenFileError'
  }
}

function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  return e.code ?? e.message
}

/** Reads a token file: refuses one that others may read or that is empty; the token is its first line, trimmed. */
export function readTokenFile(file: string): string {
  let st: fs.Stats
  try {
    st = fs.statSync(file)
  } catch (err) {
    throw new TokenFileError(`cannot read the admin token file ${file}: ${reason(err)}`)
  }
  if (!st.isFile()) throw new TokenFileError(`the admin token file ${file} is not a regular file`)
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
    throw new TokenFileError(
      `the admin token file ${file} may be read by others (mode ${mode}); run chmod 600 ${file}, or delete it and restart mxgate to get a new token`,
    )
  }
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new TokenFileError(`cannot read the admin token file ${file}: ${reason(err)}`)
  }
  const token = (text.split('\n')[0] ?? '').trim()
  if (token === '') throw new TokenFileError(`the admin token file ${file} is empty; delete it and restart mxgate`)
  return token
}

function removeQuietly(file: string): void {
  try {
    fs.rmSync(file, { force: true })
  } catch {
    // an unusable directory: the caller's error already says so
  }
}

/**
 * Returns the token in `file`, generating one first if the file does not exist. The file appears whole or not at
 * all (written to a temp name, then hard-linked into place), so a worker or a second node never reads half a token.
 */
export function ensureTokenFile(file: string): { token: string; created: boolean } {
  if (!fs.existsSync(file)) {
    const dir = path.dirname(file)
    const tmp = path.join(dir, `.admin-token-${process.pid}-${randomBytes(4).toString('hex')}`)
    const cannot = (err: unknown) =>
      new TokenFileError(
        `cannot create the admin token file ${file}: ${reason(err)}; set admin.token_file (MXGATE_ADMIN_TOKEN_FILE) to a writable path or set admin.token`,
      )
    const token = randomBytes(32).toString('base64url')
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
      const fd = fs.openSync(tmp, 'wx', 0o600)
      try {
        fs.writeSync(fd, `${token}\n`)
        fs.fsyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
    } catch (err) {
      removeQuietly(tmp)
      throw cannot(err)
    }
    try {
      fs.linkSync(tmp, file)
      return { token, created: true }
    } catch (err) {
      // Another process created it first: theirs wins, read it below.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw cannot(err)
    } finally {
      removeQuietly(tmp)
    }
  }
  return { token: readTokenFile(file), created: false }
}
