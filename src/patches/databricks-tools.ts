import { BACKEND_INDEX_FILE } from "./backend-loopback.js";
import {
  drift,
  oneFilePatch,
  type PatchContext,
  requireFile,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits } from "./text-edits.js";
import type { SourceFile } from "./ts-morph.js";

/**
 * Databricks' managed MCP servers behind MetaMCP (docs/databricks-tools.md): the backend's entry
 * `apps/backend/src/index.ts` imports our module `./databricks-tools` (overlay/, copied in by `prepare`)
 * as its very first import, so the module wraps the global `fetch` before any of MetaMCP's code runs and
 * every MCP client MetaMCP makes reaches the app's workspace only through the runtime's tools gateway.
 * Every stable release's entry (v2.0.0 … v2.5.x, main) is an ES module that imports express; anything else
 * is drift (exit 3). It runs after every other patch that adds an import to that file, so ours stays first.
 */
export const DATABRICKS_TOOLS_PATCH_ID = "databricks-tools";
export const BACKEND_ENTRY_FILE = BACKEND_INDEX_FILE;
export const TOOLS_MODULE_FILE = "apps/backend/src/databricks-tools.ts";
const SPECIFIER = "./databricks-tools";
const IMPORT = `// metamcp-databricks: first, so MetaMCP's MCP clients reach the app's workspace only through the tools gateway.\nimport "${SPECIFIER}";\n`;
const MODULE_EXPORTS = [
  "export function installDatabricksToolsFetch(",
  "export function databricksToolsFetch(",
];
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

export function patchEntryText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  return withSourceFile(file, text, (sf) => {
    if (!importsExpress(sf)) throw drift(DATABRICKS_TOOLS_PATCH_ID, file, SHAPE, ctx);
    if (firstImportIsOurs(sf)) return { text, edits: 0 };
    if (sf.getImportDeclarations().some((d) => d.getModuleSpecifierValue() === SPECIFIER))
      throw drift(
        DATABRICKS_TOOLS_PATCH_ID,
        file,
        `\`import "${SPECIFIER}"\` as the first statement, found it later`,
        ctx,
      );
    return { text: applyTextEdits(text, [{ start: 0, end: 0, text: IMPORT }]), edits: 1 };
  });
}

export function verifyEntryText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(DATABRICKS_TOOLS_PATCH_ID, file, text, ctx, (sf) => {
    if (!importsExpress(sf)) throw drift(DATABRICKS_TOOLS_PATCH_ID, file, SHAPE, ctx);
    if (!firstImportIsOurs(sf))
      throw drift(DATABRICKS_TOOLS_PATCH_ID, file, `\`import "${SPECIFIER}";\` as the first statement`, ctx);
  });
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
  verify(tree, ctx) {
    entryPatch.verify(tree, ctx);
    const module = requireFile(tree, TOOLS_MODULE_FILE, DATABRICKS_TOOLS_PATCH_ID, ctx);
    for (const m of MODULE_EXPORTS)
      if (!module.includes(m))
        throw drift(DATABRICKS_TOOLS_PATCH_ID, TOOLS_MODULE_FILE, `to contain \`${m}\``, ctx);
  },
} satisfies typeof entryPatch;
