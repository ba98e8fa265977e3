import { BACKEND_INDEX_FILE } from "./backend-loopback.js";
import {
  drift,
  editFile,
  oneFilePatch,
  type PatchContext,
  requireFile,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits } from "./text-edits.js";
import type { FileTree } from "./tree.js";
import { Node, type SourceFile } from "./ts-morph.js";

/**
 * Databricks' managed MCP servers behind MetaMCP (docs/databricks-tools.md): the backend's entry
 * `apps/backend/src/index.ts` imports our module `./databricks-tools` (overlay/, copied in by `prepare`)
 * as its very first import, so the module wraps the global `fetch` before any of MetaMCP's code runs and
 * every MCP client MetaMCP makes reaches the app's workspace only through the runtime's tools gateway.
 * Every stable release's entry (v2.0.0 … v2.5.x, main) is an ES module that imports express; anything else
 * is drift (exit 3). It runs after every other patch that adds an import to that file, so ours stays first.
 * It also mounts the module's `databricksToolsContext` first on the app (each request's per-person handle,
 * kept for that request's work), and guards MetaMCP's idle pool (mcp-server-pool.ts, v2.1.0 … v2.4.x and
 * main) so a per-person server (`#identity=user`) is never opened ahead of a caller nor handed to the next
 * session: v2.0.0 and v2.5.x keep no idle connections (any other file that does is drift).
 */
export const DATABRICKS_TOOLS_PATCH_ID = "databricks-tools";
export const BACKEND_ENTRY_FILE = BACKEND_INDEX_FILE;
export const TOOLS_MODULE_FILE = "apps/backend/src/databricks-tools.ts";
const SPECIFIER = "./databricks-tools";
const CONTEXT = "__databricksToolsContext";
const IMPORT = `// metamcp-databricks: first, so MetaMCP's MCP clients reach the app's workspace only through the tools gateway.\nimport "${SPECIFIER}";\nimport { databricksToolsContext as ${CONTEXT} } from "${SPECIFIER}";\n`;
const MOUNT = `app.use(${CONTEXT});`;
const MODULE_EXPORTS = [
  "export function installDatabricksToolsFetch(",
  "export function databricksToolsFetch(",
  "export function databricksToolsContext(",
  "export function databricksNoIdle(",
];
/** MetaMCP's pool of upstream connections (v2.1.0 … v2.4.x, main); v2.0.0 and v2.5.x have none. */
export const POOL_FILE = "apps/backend/src/lib/metamcp/mcp-server-pool.ts";
const NO_IDLE = "__databricksNoIdle";
const POOL_IMPORT = `// metamcp-databricks: a per-person server (#identity=user) is never pooled for the next caller.\nimport { databricksNoIdle as ${NO_IDLE} } from "../../databricks-tools";\n`;
const GUARD = `if (${NO_IDLE}(params)) return;`;
const IDLE_READ = "const idleClient = this.idleSessions[serverUuid];";
const IDLE_GUARDED = `const idleClient = ${NO_IDLE}(params) ? undefined : this.idleSessions[serverUuid];`;
const IDLE_METHODS = ["createIdleSession", "createIdleSessionAsync"];
const SHAPE = 'the backend entry, an ES module with `import express from "express"`';

function importsExpress(sf: SourceFile): boolean {
  return sf.getImportDeclarations().some((d) => d.getModuleSpecifierValue() === "express");
}

function firstImportIsOurs(sf: SourceFile): boolean {
  const first = sf.getImportDeclarations()[0];
  return (
    first !== undefined &&
    first.getModuleSpecifierValue() === SPECIFIER &&
    first.getImportClause() === undefined &&
    sf.getStatements()[0] === first
  );
}

/** The one top-level `const app = express()` statement's end. */
function appStatementEnd(sf: SourceFile): number | undefined {
  const stmts = sf
    .getVariableStatements()
    .filter((st) =>
      st
        .getDeclarations()
        .some((d) => d.getName() === "app" && d.getInitializer()?.getText() === "express()"),
    );
  return stmts.length === 1 ? stmts[0]!.getEnd() : undefined;
}

export function patchEntryText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  return withSourceFile(file, text, (sf) => {
    if (!importsExpress(sf)) throw drift(DATABRICKS_TOOLS_PATCH_ID, file, SHAPE, ctx);
    if (firstImportIsOurs(sf) && text.includes(MOUNT)) return { text, edits: 0 };
    if (sf.getImportDeclarations().some((d) => d.getModuleSpecifierValue() === SPECIFIER))
      throw drift(
        DATABRICKS_TOOLS_PATCH_ID,
        file,
        `\`import "${SPECIFIER}"\` as the first statement, found it later`,
        ctx,
      );
    const end = appStatementEnd(sf);
    if (end === undefined)
      throw drift(DATABRICKS_TOOLS_PATCH_ID, file, "one top-level `const app = express()`", ctx);
    return {
      text: applyTextEdits(text, [
        { start: 0, end: 0, text: IMPORT },
        {
          start: end,
          end,
          text: `\n// metamcp-databricks: first on the app, so each request's per-person handle is kept for its work only.\n${MOUNT}`,
        },
      ]),
      edits: 2,
    };
  });
}

export function verifyEntryText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(DATABRICKS_TOOLS_PATCH_ID, file, text, ctx, (sf) => {
    if (!importsExpress(sf)) throw drift(DATABRICKS_TOOLS_PATCH_ID, file, SHAPE, ctx);
    if (!firstImportIsOurs(sf))
      throw drift(DATABRICKS_TOOLS_PATCH_ID, file, `\`import "${SPECIFIER}";\` as the first statement`, ctx);
    const end = appStatementEnd(sf);
    const after =
      end === undefined
        ? ""
        : text
            .slice(end)
            .replace(/^\s*\/\/[^\n]*\n/, "")
            .trimStart();
    if (!after.startsWith(MOUNT))
      throw drift(DATABRICKS_TOOLS_PATCH_ID, file, `\`${MOUNT}\` right after \`const app = express()\``, ctx);
  });
}

/** The body of the pool class's method `name`, if it has one parameter named `params`. */
function idleMethodBodyStart(sf: SourceFile, name: string): number | undefined {
  for (const c of sf.getClasses()) {
    const m = c.getMethod(name);
    const body = m?.getBody();
    if (m && body && m.getParameters().some((p) => p.getName() === "params")) return body.getStart() + 1;
  }
  return undefined;
}

export function patchPoolText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  if (text.includes(POOL_IMPORT.trim().split("\n")[1]!)) return { text, edits: 0 };
  return withSourceFile(file, text, (sf) => {
    const reads = text.split(IDLE_READ).length - 1;
    const starts = IDLE_METHODS.map((m) => idleMethodBodyStart(sf, m));
    if (reads !== 1 || starts.some((x) => x === undefined))
      throw drift(
        DATABRICKS_TOOLS_PATCH_ID,
        file,
        `one \`${IDLE_READ}\` in getSession and methods ${IDLE_METHODS.join(", ")}(…, params, …)`,
        ctx,
      );
    const at = text.indexOf(IDLE_READ);
    return {
      text: applyTextEdits(text, [
        { start: 0, end: 0, text: POOL_IMPORT },
        ...starts.map((start) => ({ start: start!, end: start!, text: `\n    ${GUARD}` })),
        { start: at, end: at + IDLE_READ.length, text: IDLE_GUARDED },
      ]),
      edits: 4,
    };
  });
}

export function verifyPoolText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(DATABRICKS_TOOLS_PATCH_ID, file, text, ctx, (sf) => {
    if (!text.includes(IDLE_GUARDED) || text.includes(IDLE_READ))
      throw drift(DATABRICKS_TOOLS_PATCH_ID, file, `\`${IDLE_GUARDED}\``, ctx);
    for (const m of IDLE_METHODS) {
      const body = sf
        .getClasses()
        .map((c) => c.getMethod(m)?.getBody())
        .find(Boolean);
      const first = body && Node.isBlock(body) ? body.getStatements()[0]?.getText() : undefined;
      if (first !== GUARD) throw drift(DATABRICKS_TOOLS_PATCH_ID, file, `\`${GUARD}\` first in ${m}`, ctx);
    }
  });
}

/** Without the pool file, no other backend file may keep idle upstream connections (a moved pool is drift). */
function assertNoOtherPool(tree: FileTree, ctx: PatchContext): void {
  for (const f of tree.list("apps/backend/src"))
    if (f.endsWith(".ts") && /\bidleSessions\b/.test(tree.read(f) ?? ""))
      throw drift(DATABRICKS_TOOLS_PATCH_ID, f, `MetaMCP's idle pool only in ${POOL_FILE}`, ctx);
}

const entryPatch = oneFilePatch({
  id: DATABRICKS_TOOLS_PATCH_ID,
  description:
    "MetaMCP's backend reaches Databricks' managed MCP servers on the app's workspace only through the runtime's tools gateway, which attaches a fresh token (docs/databricks-tools.md)",
  file: BACKEND_ENTRY_FILE,
  patchText: patchEntryText,
  verifyText: verifyEntryText,
});

export const databricksToolsPatch = {
  ...entryPatch,
  apply(tree, ctx) {
    const files = entryPatch.apply(tree, ctx).files;
    if (tree.read(POOL_FILE) === undefined) assertNoOtherPool(tree, ctx);
    else
      files.push(
        ...editFile(tree, POOL_FILE, DATABRICKS_TOOLS_PATCH_ID, ctx, (t) => patchPoolText(POOL_FILE, t, ctx))
          .files,
      );
    return { files };
  },
  verify(tree, ctx) {
    entryPatch.verify(tree, ctx);
    const pool = tree.read(POOL_FILE);
    if (pool === undefined) assertNoOtherPool(tree, ctx);
    else verifyPoolText(POOL_FILE, pool, ctx);
    const module = requireFile(tree, TOOLS_MODULE_FILE, DATABRICKS_TOOLS_PATCH_ID, ctx);
    for (const m of MODULE_EXPORTS)
      if (!module.includes(m))
        throw drift(DATABRICKS_TOOLS_PATCH_ID, TOOLS_MODULE_FILE, `to contain \`${m}\``, ctx);
  },
} satisfies typeof entryPatch;
