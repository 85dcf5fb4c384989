// A small INI reader that keeps line numbers, so config errors can name file:line and key.

export interface IniEntry {
  key: string
  value: string
  line: number
}

export interface IniSection {
  name: string
  line: number
  entries: IniEntry[]
}

export class IniSyntaxError extends Error {
  readonly code = 'EINISYNTAX'
  constructor(
    readonly file: string,
    readonly line: number,
    readonly detail: string,
  ) {
    super(`${file}:${line}: ${detail}`)
    this.name = 'IniSyntaxError'
  }
}

/**
 * Parses `[section]` headers and `key = value` lines. `;` and `#` start comments (whole-line, or after whitespace).
 * Keys before any section belong to the section named ''. A repeated section or key is an error: silently taking
 * the last one hides typos in a file an operator trusts.
 */
export function parseIni(text: string, file: string): IniSection[] {
  const sections: IniSection[] = [{ name: '', line: 0, entries: [] }]
  const seenSections = new Set<string>([''])
  let current = sections[0]!
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1
    const line = stripComment(lines[i] ?? '').trim()
    if (line === '') continue
    if (line.startsWith('[')) {
      const m = /^\[\s*([A-Za-z0-9_.:-]+)\s*\]$/.exec(line)
      if (!m) throw new IniSyntaxError(file, lineNo, `bad section header ${JSON.stringify(line)}; expected [name]`)
      const name = m[1]!
      if (seenSections.has(name)) throw new IniSyntaxError(file, lineNo, `section [${name}] appears twice`)
      seenSections.add(name)
      current = { name, line: lineNo, entries: [] }
      sections.push(current)
      continue
    }
    const eq = line.indexOf('=')
    if (eq <= 0) throw new IniSyntaxError(file, lineNo, `expected "key = value", got ${JSON.stringify(line)}`)
    const key = line.slice(0, eq).trim()
    if (!/^[A-Za-z0-9_.-]+$/.test(key)) throw new IniSyntaxError(file, lineNo, `bad key ${JSON.stringify(key)}`)
    if (current.entries.some((e) => e.key === key)) {
      const where = current.name ? `[${current.name}]` : 'the top of the file'
      throw new IniSyntaxError(file, lineNo, `key "${key}" appears twice in ${where}`)
    }
    current.entries.push({ key, value: unquote(line.slice(eq + 1).trim()), line: lineNo })
  }
  return sections
}

function stripComment(line: string): string {
  const t = line.trimStart()
  if (t.startsWith(';') || t.startsWith('#')) return ''
  // An inline comment needs whitespace before it and must be outside quotes, so values such as "a;b",
  // "x ; y" in quotes, or URLs with '#' survive.
  let quote: string | null = null
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!
    if (quote !== null) {
      if (c === quote) quote = null
    } else if (c === '"' || c === "'") {
      if (i === 0 || /[\s=]/.test(line[i - 1]!)) quote = c
    } else if ((c === ';' || c === '#') && i > 0 && /\s/.test(line[i - 1]!)) {
      return line.slice(0, i)
    }
  }
  return line
}

function unquote(v: string): string {
  if (v.length >= 2 && ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'")))) {
    return v.slice(1, -1)
  }
  return v
}
