// The demo's screen: event lines scroll, the progress line stays at the bottom (TTY) or repeats now and then (pipe).

export interface DisplayTarget {
  write(text: string): unknown
  isTTY?: boolean
}

const CLEAR_LINE = '\r\x1b[2K'
const TTY_REDRAW_MS = 100

export class Display {
  private readonly started = Date.now()
  private shownProgress = ''
  private lastPlainProgressAt = 0
  private lastTtyDrawAt = 0

  constructor(
    private readonly out: DisplayTarget,
    private readonly tty = out.isTTY === true,
    /** Without a TTY, a progress line at most this often. */
    private readonly plainEveryMs = 2000,
  ) {}

  /** Seconds since the demo began, as a fixed-width stamp: "[ 12.3s]". */
  stamp(at = Date.now()): string {
    return `[${((at - this.started) / 1000).toFixed(1).padStart(5)}s]`
  }

  /** A line that stays on screen; the progress line (on a TTY) is redrawn below it. */
  line(text: string): void {
    if (this.tty && this.shownProgress !== '') {
      this.out.write(`${CLEAR_LINE}${text}\n${this.shownProgress}`)
    } else {
      this.out.write(`${text}\n`)
    }
  }

  /** Replaces the progress line on a TTY; elsewhere prints it when `force` or after plainEveryMs. */
  progress(text: string, force = false): void {
    const now = Date.now()
    if (this.tty) {
      this.shownProgress = text
      // Redrawing for every message would flicker and cost CPU the relay needs; ten times a second reads as live.
      if (!force && now - this.lastTtyDrawAt < TTY_REDRAW_MS) return
      this.lastTtyDrawAt = now
      this.out.write(`${CLEAR_LINE}${text}`)
      return
    }
    if (!force && now - this.lastPlainProgressAt < this.plainEveryMs) return
    this.lastPlainProgressAt = now
    this.out.write(`${this.stamp(now)} ${text}\n`)
  }

  /** Leaves the progress line as the last state and moves below it. */
  endProgress(): void {
    if (this.tty && this.shownProgress !== '') this.out.write('\n')
    this.shownProgress = ''
  }
}
