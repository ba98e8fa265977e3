import { drift, type Patch, type PatchContext, type PatchFileRecord, requireFile } from "./patch.js";
import { applyTextEdits, forget, parseTypeScript, syntaxErrors, type TextEdit } from "./text-edits.js";
import type { FileTree } from "./tree.js";
import {
  type CallExpression,
  type ImportDeclaration,
  Node,
  type SourceFile,
  SyntaxKind,
} from "./ts-morph.js";

/**
 * Moves every Drizzle table and enum into the custom schema: one `export const <x>Schema =
 * pgSchema("<schema>")`, and every `pgTable(`/`pgEnum(` call (however imported) becomes
 * `<x>Schema.table(`/`<x>Schema.enum(`. Found through the syntax tree, counted, never assumed.
 */
export const DRIZZLE_SCHEMA_PATCH_ID = "drizzle-schema";
export const SCHEMA_FILE = "apps/backend/src/db/schema.ts";
/** Other files under here that build pg-core objects are patched too (upstream may split its schema). */
const SOURCE_DIR = "apps/backend/src";
const PG_CORE = "drizzle-orm/pg-core";

/** pg-core builders that create objects in `public`, and their schema-bound twin on a `PgSchema`. */
const SCHEMA_BOUND = {
  pgTable: { method: "table", count: "tables" },
  pgEnum: { method: "enum", count: "enums" },
  pgView: { method: "view", count: "views" },
  pgMaterializedView: { method: "materializedView", count: "materializedViews" },
  pgSequence: { method: "sequence", count: "sequences" },
} as const;
type Builder = keyof typeof SCHEMA_BOUND;
const isBuilder = (name: string): name is Builder => Object.hasOwn(SCHEMA_BOUND, name);
const METHOD_TO_COUNT = new Map<string, string>(Object.values(SCHEMA_BOUND).map((b) => [b.method, b.count]));

/** `metamcp_app` → `metamcpAppSchema`. */
export function schemaConstName(schema: string): string {
  const camel = schema
    .split(/_+/)
    .filter(Boolean)
    .map((part, i) => (i === 0 ? part : part[0]!.toUpperCase() + part.slice(1)))
    .join("");
  return `${camel}Schema`;
}

interface PgCoreImports {
  /** local name → imported name, for value imports from drizzle-orm/pg-core. */
  named: Map<string, string>;
  /** `import * as pg from "drizzle-orm/pg-core"`. */
  namespaces: string[];
  declarations: ImportDeclaration[];
}

function pgCoreImports(sf: SourceFile): PgCoreImports {
  const result: PgCoreImports = { named: new Map(), namespaces: [], declarations: [] };
  for (const decl of sf.getImportDeclarations()) {
    if (decl.getModuleSpecifierValue() !== PG_CORE || decl.isTypeOnly()) continue;
    result.declarations.push(decl);
    const ns = decl.getNamespaceImport();
    if (ns) result.namespaces.push(ns.getText());
    for (const spec of decl.getNamedImports()) {
      if (spec.isTypeOnly()) continue;
      result.named.set(spec.getAliasNode()?.getText() ?? spec.getName(), spec.getName());
    }
  }
  return result;
}

/** The pg-core export a callee refers to (`pgTable`, `t` aliasing pgTable, `pg.pgTable`), if any. */
function pgCoreExportOf(node: Node, imports: PgCoreImports): string | undefined {
  if (Node.isIdentifier(node)) return imports.named.get(node.getText());
  if (Node.isPropertyAccessExpression(node)) {
    const target = node.getExpression();
    if (Node.isIdentifier(target) && imports.namespaces.includes(target.getText())) return node.getName();
  }
  return undefined;
}

function isInImport(node: Node): boolean {
  return node.getFirstAncestorByKind(SyntaxKind.ImportDeclaration) !== undefined;
}

/** Names of consts initialised with `pgSchema("<name>")`, keyed by the const's name. */
function schemaDeclarations(sf: SourceFile, imports: PgCoreImports): Map<string, string | undefined> {
  const out = new Map<string, string | undefined>();
  for (const decl of sf.getVariableDeclarations()) {
    const init = decl.getInitializer();
    if (!init || !Node.isCallExpression(init)) continue;
    if (pgCoreExportOf(init.getExpression(), imports) !== "pgSchema") continue;
    const arg = init.getArguments()[0];
    out.set(decl.getName(), arg && Node.isStringLiteral(arg) ? arg.getLiteralValue() : undefined);
  }
  return out;
}

/** Calls of `<schemaConst>.table(` etc. per count key, for the consts given. */
function schemaBoundCalls(sf: SourceFile, consts: ReadonlySet<string>): Map<string, CallExpression[]> {
  const out = new Map<string, CallExpression[]>();
  for (const call of sf.getDescendantsOfKind(SyntaxKind.CallExpression)) {
    const callee = call.getExpression();
    if (!Node.isPropertyAccessExpression(callee)) continue;
    const target = callee.getExpression();
    if (!Node.isIdentifier(target) || !consts.has(target.getText())) continue;
    const count = METHOD_TO_COUNT.get(callee.getName());
    if (!count) continue;
    out.set(count, [...(out.get(count) ?? []), call]);
  }
  return out;
}

/** Every remaining reference to a public-schema builder, as `line: text`. */
function publicBuilderUses(sf: SourceFile, imports: PgCoreImports): string[] {
  const uses: string[] = [];
  for (const id of sf.getDescendantsOfKind(SyntaxKind.Identifier)) {
    if (isInImport(id)) continue;
    const parent = id.getParent();
    // `pg.pgTable`: the property name is the builder; `x.pgTable` on anything else is not ours.
    if (Node.isPropertyAccessExpression(parent) && parent.getNameNode() === id) {
      const ns = parent.getExpression();
      if (!(Node.isIdentifier(ns) && imports.namespaces.includes(ns.getText()))) continue;
      if (isBuilder(id.getText())) uses.push(`line ${id.getStartLineNumber()}: ${parent.getText()}`);
      continue;
    }
    if (Node.isPropertyAssignment(parent) && parent.getNameNode() === id) continue;
    const imported = imports.named.get(id.getText());
    if (imported && isBuilder(imported)) uses.push(`line ${id.getStartLineNumber()}: ${id.getText()}`);
  }
  return uses;
}

interface FileOutcome {
  text: string;
  edits: number;
  counts: Record<string, number>;
}

/** Rewrites one file's text; pure. */
export function patchDrizzleSchemaText(
  file: string,
  text: string,
  ctx: PatchContext,
  exported = true,
): FileOutcome {
  const sf = parseTypeScript(file, text);
  try {
    const imports = pgCoreImports(sf);
    const existing = [...schemaDeclarations(sf, imports)].find(([, schema]) => schema === ctx.schema)?.[0];
    const constName = existing ?? freeName(sf, schemaConstName(ctx.schema));
    const edits: TextEdit[] = [];

    // 1. Every builder call becomes the schema's method.
    const replaced = new Map<string, number>(); // local name → calls replaced
    let callEdits = 0;
    for (const call of sf.getDescendantsOfKind(SyntaxKind.CallExpression)) {
      const callee = call.getExpression();
      const builder = pgCoreExportOf(callee, imports);
      if (!builder || !isBuilder(builder)) continue;
      edits.push({
        start: callee.getStart(),
        end: callee.getEnd(),
        text: `${constName}.${SCHEMA_BOUND[builder].method}`,
      });
      callEdits++;
      if (Node.isIdentifier(callee))
        replaced.set(callee.getText(), (replaced.get(callee.getText()) ?? 0) + 1);
    }
    if (callEdits === 0 && existing === undefined) {
      return { text, edits: 0, counts: {} };
    }

    // 2. The pgSchema const, right after the imports (unless a previous run left it there).
    let importEdits = 0;
    const mainImport =
      imports.declarations.find((d) => d.getNamedImports().length > 0) ?? imports.declarations[0];
    const pgSchemaLocal =
      [...imports.named].find(([, imported]) => imported === "pgSchema")?.[0] ??
      (imports.namespaces[0] && !mainImport?.getNamedImports().length
        ? `${imports.namespaces[0]}.pgSchema`
        : undefined);
    if (existing === undefined) {
      const lastImport = sf.getImportDeclarations().at(-1);
      const at = lastImport ? lastImport.getEnd() : 0;
      const decl = `${exported ? "export " : ""}const ${constName} = ${pgSchemaLocal ?? "pgSchema"}(${JSON.stringify(ctx.schema)});`;
      edits.push({ start: at, end: at, text: lastImport ? `\n\n${decl}` : `${decl}\n\n` });
    }

    // 3. Imports: add pgSchema, drop the builders no longer referenced.
    const references = new Map<string, number>();
    for (const id of sf.getDescendantsOfKind(SyntaxKind.Identifier)) {
      if (!isInImport(id)) references.set(id.getText(), (references.get(id.getText()) ?? 0) + 1);
    }
    for (const decl of imports.declarations) {
      const specs = decl.getNamedImports();
      if (specs.length === 0) continue;
      const keep = specs.filter((spec) => {
        const local = spec.getAliasNode()?.getText() ?? spec.getName();
        if (!isBuilder(spec.getName()) || spec.isTypeOnly()) return true;
        return (references.get(local) ?? 0) > (replaced.get(local) ?? 0);
      });
      const names = keep.map((s) => s.getText());
      if (decl === mainImport && pgSchemaLocal === undefined) {
        const at = names.findIndex((n) => n.localeCompare("pgSchema", "en") > 0);
        names.splice(at === -1 ? names.length : at, 0, "pgSchema");
      }
      if (names.length === specs.length && names.every((n, i) => n === specs[i]!.getText())) continue;
      importEdits += specs.length - keep.length + (names.length > keep.length ? 1 : 0);
      const clause = decl.getImportClauseOrThrow().getNamedBindingsOrThrow();
      if (names.length === 0 && !decl.getDefaultImport()) {
        edits.push({ start: decl.getFullStart(), end: decl.getEnd(), text: "" });
        continue;
      }
      edits.push({
        start: clause.getStart(),
        end: clause.getEnd(),
        text: formatNamedImports(clause.getText(), names),
      });
    }

    const out = applyTextEdits(text, edits);
    return {
      text: out,
      edits: callEdits + importEdits + (existing === undefined ? 1 : 0),
      counts: countSchemaObjects(file, out, ctx),
    };
  } finally {
    forget(sf);
  }
}

/** `{ a, b }` or the multi-line form, in the style of the original clause. */
function formatNamedImports(original: string, names: string[]): string {
  if (!original.includes("\n")) return `{ ${names.join(", ")} }`;
  const indent = /\n([ \t]+)\S/.exec(original)?.[1] ?? "  ";
  const trailing = /,\s*}$/.test(original);
  return `{\n${names.map((n, i) => `${indent}${n}${i < names.length - 1 || trailing ? "," : ""}`).join("\n")}\n}`;
}

function freeName(sf: SourceFile, wanted: string): string {
  const taken = new Set(sf.getDescendantsOfKind(SyntaxKind.Identifier).map((id) => id.getText()));
  let name = wanted;
  for (let i = 2; taken.has(name); i++) name = `${wanted}${i}`;
  return name;
}

/** Tables, enums... created through the custom schema's const in `text`. */
export function countSchemaObjects(file: string, text: string, ctx: PatchContext): Record<string, number> {
  const sf = parseTypeScript(file, text);
  try {
    const imports = pgCoreImports(sf);
    const consts = new Set(
      [...schemaDeclarations(sf, imports)].filter(([, s]) => s === ctx.schema).map(([name]) => name),
    );
    const counts: Record<string, number> = {};
    for (const [key, calls] of schemaBoundCalls(sf, consts)) counts[key] = calls.length;
    return counts;
  } finally {
    forget(sf);
  }
}

/** Files that import from drizzle-orm/pg-core under the backend's sources (schema.ts first). */
function candidateFiles(tree: FileTree): string[] {
  const others = tree
    .list(SOURCE_DIR)
    .filter((f) => /\.(m|c)?tsx?$/.test(f) && !f.endsWith(".d.ts") && f !== SCHEMA_FILE)
    .filter((f) => tree.read(f)?.includes(PG_CORE));
  return [SCHEMA_FILE, ...others];
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

export const drizzleSchemaPatch: Patch = {
  id: DRIZZLE_SCHEMA_PATCH_ID,
  description:
    "Drizzle schema: one pgSchema(<schema>) and every pgTable/pgEnum turned into <schema>.table/.enum",
  apply(tree, ctx) {
    requireFile(tree, SCHEMA_FILE, this.id, ctx);
    const files: PatchFileRecord[] = [];
    const counts: Record<string, number> = {};
    for (const file of candidateFiles(tree)) {
      const text = tree.read(file)!;
      const outcome = patchDrizzleSchemaText(file, text, ctx, file === SCHEMA_FILE);
      if (outcome.text !== text) tree.write(file, outcome.text);
      if (outcome.edits > 0) files.push({ path: file, edits: outcome.edits });
      addCounts(counts, outcome.counts);
    }
    if (!counts.tables) {
      throw drift(
        this.id,
        SCHEMA_FILE,
        "at least one Drizzle table (a pgTable( call from drizzle-orm/pg-core)",
        ctx,
      );
    }
    return { files, counts };
  },
  verify(tree, ctx) {
    const schemaText = requireFile(tree, SCHEMA_FILE, this.id, ctx);
    const name = schemaConstName(ctx.schema);
    for (const file of candidateFiles(tree)) {
      const text = file === SCHEMA_FILE ? schemaText : tree.read(file)!;
      const sf = parseTypeScript(file, text);
      try {
        const errors = syntaxErrors(sf);
        if (errors.length)
          throw drift(this.id, file, `valid TypeScript after patching, got ${errors[0]}`, ctx);
        const imports = pgCoreImports(sf);
        const uses = publicBuilderUses(sf, imports);
        if (uses.length) {
          throw drift(
            this.id,
            file,
            `no pgTable/pgEnum (or other public-schema builder) left outside schema ${ctx.schema}, found ${uses.slice(0, 3).join("; ")}`,
            ctx,
          );
        }
        const schemas = schemaDeclarations(sf, imports);
        const foreign = [...schemas].filter(([, s]) => s !== ctx.schema);
        const foreignConsts = new Set(foreign.map(([n]) => n));
        if ([...schemaBoundCalls(sf, foreignConsts).values()].some((c) => c.length > 0)) {
          throw drift(
            this.id,
            file,
            `every table and enum in schema ${ctx.schema}, but some use pgSchema(${foreign.map(([, s]) => JSON.stringify(s)).join(", ")})`,
            ctx,
          );
        }
        if (file === SCHEMA_FILE) {
          const ours = [...schemas].filter(([, s]) => s === ctx.schema).map(([n]) => n);
          if (ours.length === 0) {
            throw drift(this.id, file, `a const ${name} = pgSchema(${JSON.stringify(ctx.schema)})`, ctx);
          }
          const exportedDecl = sf.getVariableDeclaration(ours[0]!)?.getVariableStatement()?.isExported();
          if (!exportedDecl) throw drift(this.id, file, `the pgSchema const ${ours[0]} to be exported`, ctx);
          if (!countSchemaObjects(file, text, ctx).tables) {
            throw drift(this.id, file, `at least one table created with ${ours[0]}.table(`, ctx);
          }
        }
      } finally {
        forget(sf);
      }
    }
  },
};
