// Which admin token an ops command sends, in order: --token, MXGATE_ADMIN_TOKEN, --token-file,
// MXGATE_ADMIN_TOKEN_FILE, and last the token file `mxgate start` generated with the same settings — the default
// file only for a loopback --admin, so a local token is never sent to another host.
import path from 'node:path'
import { isLoopbackClient } from '../admin/auth'
import { readTokenFile, TokenFileError } from '../admin/token-file'
import { adminTokenFile, loadConfig } from '../config/load'

const ROOT = path.resolve(__dirname, '..', '..')

export interface TokenChoice {
  token: string | undefined
  /** Where the token came from ("--token", "file /x/admin.token"…), or null when none was found. */
  source: string | null
  /** Why the default token file gave none, for the hint on a 401 (not an error: the node may have a token set). */
  note: string | null
}

export interface TokenInputs {
  flag: string | undefined
  fileFlag: string | undefined
  env: NodeJS.ProcessEnv
  admin: URL
  /** The default token file; undefined = the one `mxgate start` uses with these settings; null = none. */
  defaultFile?: string | null
}

/** The token file `mxgate start` would use with the shipped config and this environment, or null if unknown. */
export function defaultTokenFile(env: NodeJS.ProcessEnv): string | null {
  try {
    return adminTokenFile(loadConfig({ baseDir: path.join(ROOT, 'config'), env }))
  } catch {
    return null
  }
}

function isLocal(url: URL): boolean {
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return host === 'localhost' || isLoopbackClient(host)
}

/** Throws TokenFileError when a file named by --token-file or MXGATE_ADMIN_TOKEN_FILE cannot be used. */
export function chooseToken(i: TokenInputs): TokenChoice {
  if (i.flag !== undefined) return { token: i.flag, source: '--token', note: null }
  if (i.env.MXGATE_ADMIN_TOKEN) return { token: i.env.MXGATE_ADMIN_TOKEN, source: 'MXGATE_ADMIN_TOKEN', note: null }
  const named = i.fileFlag ?? (i.env.MXGATE_ADMIN_TOKEN_FILE || undefined)
  if (named !== undefined) {
    const file = path.resolve(named)
    return { token: readTokenFile(file), source: `file ${file}`, note: null }
  }
  if (!isLocal(i.admin)) return { token: undefined, source: null, note: null }
  const file = i.defaultFile === undefined ? defaultTokenFile(i.env) : i.defaultFile
  if (file === null) return { token: undefined, source: null, note: null }
  try {
    return { token: readTokenFile(file), source: `file ${file}`, note: null }
  } catch (err) {
    if (!(err instanceof TokenFileError)) throw err
    return { token: undefined, source: null, note: err.message }
  }
}
