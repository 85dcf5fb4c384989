// The unit of work that flows haraka → relay → {backend, spool}.

export interface Envelope {
  /** Reverse path without angle brackets; '' is the null sender (<>). */
  from: string
  /** Forward paths without angle brackets, in the order the sender gave them. */
  to: string[]
}

export interface InboundMessage {
  /** Unique id (Haraka's transaction uuid for live mail, the spool id for spooled mail). */
  id: string
  envelope: Envelope
  /**
   * The message in SMTP wire form: CRLF line endings, dot-stuffed, without the terminating "." line.
   * Kept in this form so that forwarding is a plain write and re-sending to another backend costs nothing.
   */
  body: Buffer
  /** Epoch ms when the sender finished DATA. */
  receivedAt: number
}
