// Checks Kubernetes manifests against the Kubernetes API schemas as the kubernetes-models package ships them:
// its validate() (ajv, generated from the OpenAPI spec) for types, required fields and formats, and the TypeScript
// compiler over its interfaces for what validate() lets through: a misspelt field (the API server would drop it
// silently, or reject it with strict field validation).
import path from 'node:path'
import ts from 'typescript'

export interface Manifest {
  file: string
  /** 0-based index of the document in its file. */
  index: number
  doc: Record<string, unknown> & { apiVersion: string; kind: string; metadata?: { name?: string } }
}

/** Where kubernetes-models keeps a kind: apps/v1 StatefulSet → kubernetes-models/apps/v1/StatefulSet. */
export function modelModule(m: Manifest): string {
  return `kubernetes-models/${m.doc.apiVersion}/${m.doc.kind}`
}

/** Problems validate() finds, one string per manifest that fails; empty when all pass. */
export async function schemaErrors(manifests: Manifest[]): Promise<string[]> {
  const out: string[] = []
  for (const m of manifests) {
    const mod = (await import(modelModule(m))) as Record<string, new (d: unknown) => { validate(): void }>
    const Model = mod[m.doc.kind]
    if (Model === undefined) {
      out.push(`${label(m)}: no schema for ${m.doc.apiVersion} ${m.doc.kind}`)
      continue
    }
    try {
      new Model(m.doc).validate()
    } catch (err) {
      out.push(`${label(m)}: ${(err as Error).message}`)
    }
  }
  return out
}

/** Fields the schemas do not know (TypeScript's excess-property check against kubernetes-models' interfaces). */
export function unknownFieldErrors(manifests: Manifest[], root: string): string[] {
  const file = path.join(root, 'deploy', 'k8s', '__schema_check__.mts')
  const lines = manifests.map((m, i) => {
    return `import type { I${m.doc.kind} as T${i} } from '${modelModule(m)}'\nexport const m${i}: T${i} = ${JSON.stringify(m.doc)}`
  })
  const source = lines.join('\n')
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const readFile = host.readFile.bind(host)
  const getSourceFile = host.getSourceFile.bind(host)
  host.readFile = (f) => (f === file ? source : readFile(f))
  host.fileExists = (
    (exists) => (f: string) =>
      f === file || exists(f)
  )(host.fileExists.bind(host))
  host.getSourceFile = (f, v, onError, create) =>
    f === file ? ts.createSourceFile(f, source, v) : getSourceFile(f, v, onError, create)
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    const at = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1
    const m = at >= 0 ? manifests[Math.floor(at / 2)] : undefined
    return `${m ? label(m) : 'manifests'}: ${text}`
  })
}

function label(m: Manifest): string {
  return `${m.file}#${m.index} ${m.doc.kind}/${m.doc.metadata?.name ?? '?'}`
}
