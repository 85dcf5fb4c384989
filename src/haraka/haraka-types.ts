// The few Haraka shapes the adapter touches (Haraka ships no types).

export type Next = (retval?: number, msg?: string) => void

/** @haraka/email-address Address: `address` is a getter ("user@host"), `host` a string. */
export interface HarakaAddress {
  readonly address: string
  /** Local part, quotes kept when quoted. */
  readonly user: string
  readonly host: string
  /** The path as the client wrote it (with any source route). */
  readonly original: string
  isNull(): boolean
}

export interface HarakaTransaction {
  uuid: string
  mail_from: HarakaAddress
  rcpt_to: HarakaAddress[]
  message_stream: {
    get_data(options: Record<string, unknown>, cb: (data: Buffer) => void): void
  }
  notes: Record<string, unknown>
}

export interface HarakaConnection {
  uuid: string
  /** Set by Haraka when the client sent a command before it was asked to (before the greeting, or a pipelined
   * command without PIPELINING). */
  early_talker?: boolean
  /** Bytes read but not yet processed as commands. */
  current_data?: Buffer | null
  transaction: HarakaTransaction | null
  remote: { ip: string; host?: string }
  local: { host: string; info: string }
  respond(code: number, msg: string | string[], cb?: () => void): void
}

export interface HarakaPlugin {
  timeout: number
  register_hook(hook: string, method: string): void
}
