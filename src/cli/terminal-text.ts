// Text from a node (backend replies, envelope addresses, reasons) is shown on an operator's terminal: escape every
// control character so a reply cannot move the cursor, rewrite the screen or inject escape sequences (ANSI/OSC).

const NAMED: Record<string, string> = { '\r': '\\r', '\n': '\\n', '\t': '\\t' }

// C0, DEL, C1 (U+0080–U+009F: 0x9B is a one-byte CSI on some terminals), line/paragraph separators and the bidi
// overrides and isolates that reorder what is shown.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

function escapeChar(c: string): string {
  const named = NAMED[c]
  if (named !== undefined) return named
  const code = c.charCodeAt(0)
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`
}

/** `s` with every control character written as an escape: CR → `\r`, LF → `\n`, ESC → `\x1b`, U+202E → `\u202e`. */
export function safeText(s: string): string {
  return s.replace(UNSAFE, escapeChar)
}

// JSON.stringify already writes C0 as \u00XX; DEL, C1 and the separators/bidi controls it leaves raw.
const JSON_UNSAFE = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

/** JSON for a terminal: still valid JSON, with no raw control character anywhere in it. */
export function terminalJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(
    JSON_UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  )
}
