// `mxgate --version` and package.json's entry points: what a packager or an operator's script relies on.
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { ROOT, runMxgate } from './helpers/mxgate-process'

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  version: string
  main: string
  bin: Record<string, string>
}

t.test('mxgate --version prints the package version and exits 0', async (t) => {
  for (const arg of ['--version', 'version', '-V']) {
    const r = await runMxgate([arg])
    t.equal(r.code, 0, `${arg} exits 0`)
    t.equal(r.stdout, `mxgate ${pkg.version}\n`, `${arg} prints the version`)
    t.equal(r.stderr, '')
  }
})

t.test("package.json's main points at a built file that loads and exports the CLI", async (t) => {
  const main = path.join(ROOT, pkg.main)
  t.ok(existsSync(main), `${pkg.main} exists after the build`)
  const mod = require(main) as { main?: unknown }
  t.type(mod.main, 'function', 'it exports main()')
})

t.test("package.json's bin points at an existing file", async (t) => {
  for (const [name, file] of Object.entries(pkg.bin)) t.ok(existsSync(path.join(ROOT, file)), `${name}: ${file}`)
})
