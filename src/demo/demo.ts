export async function runDemo(_argv: string[]): Promise<number> {
  process.stderr.write('demo: not built yet\n')
  return 1
}
