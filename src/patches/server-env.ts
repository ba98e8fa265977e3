import {
  drift,
  editFile,
  type Patch,
  type PatchContext,
  requireFile,
  withSourceFile,
  withValidSourceFile,
  writeModule,
} from "./patch.js";
import { SERVER_ENV_MODULE_FILE, serverEnvModule } from "./server-env-module.js";
import { applyTextEdits, type TextEdit } from "./text-edits.js";
import { type Node, type SourceFile, SyntaxKind } from "./ts-morph.js";

/**
 * What runs inside gets no secret it doesn't need (docs/stdio-servers.md). Read from every stable tag:
 * - `lib/metamcp/utils.ts` `resolveEnvVariables` (v2.4.13 on, and main) turns a server env value `${NAME}`
 *   into `process.env[NAME]` of the backend, for STDIO servers (lib/metamcp/client.ts) and the inspector.
 *   Each `process.env[…]` read inside it becomes our allow-list check; the rest of upstream's function (its
 *   "not found, keep the literal" branch) stays. Releases before v2.4.13 and v2.5.x have no expansion: a note.
 * - `routers/mcp-proxy/server.ts`: the inspector's STDIO process gets `{ ...process.env, … }`, the backend's
 *   whole environment; every such spread becomes the environment without the app's secrets. v2.5.x
 *   reads no `process.env` there.
 */
export const SERVER_ENV_PATCH_ID = "server-env";
export const UTILS_FILE = "apps/backend/src/lib/metamcp/utils.ts";
export const INSPECTOR_FILE = "apps/backend/src/routers/mcp-proxy/server.ts";

const EXPAND = "__databricksExpandableEnv";
const INHERIT = "__databricksInheritableEnv";
const UTILS_IMPORT = `import { databricksExpandableEnv as ${EXPAND} } from "../../databricks-server-env";\n`;
const INSPECTOR_IMPORT = `import { databricksInheritableEnv as ${INHERIT} } from "../../databricks-server-env";\n`;

export const NO_EXPANSION_NOTE = `this release does not expand \${NAME} in server settings (added in v2.4.13): nothing to restrict there`;

function resolveFunctions(sf: SourceFile) {
  return sf.getFunctions().filter((f) => f.getName() === "resolveEnvVariables");
}

/** `process.env[x]` reads inside `node`. */
function envReads(node: Node) {
  return node
    .getDescendantsOfKind(SyntaxKind.ElementAccessExpression)
    .filter((e) => e.getExpression().getText() === "process.env");
}

/** Whether any upstream backend file imports `resolveEnvVariables` (upstream moved it when utils.ts lacks it). */
function referencesResolve(tree: { list(dir?: string): string[]; read(f: string): string | undefined }) {
  return tree
    .list("apps/backend/src")
    .filter((f) => f.endsWith(".ts") && !f.startsWith("apps/backend/src/databricks-"))
    .some((f) => /import\s*\{[^}]*\bresolveEnvVariables\b[^}]*\}\s*from/.test(tree.read(f) ?? ""));
}

export function patchUtilsText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  if (text.includes(UTILS_IMPORT.trim())) return { text, edits: 0 };
  return withSourceFile(file, text, (sf) => {
    const fns = resolveFunctions(sf);
    const reads = fns[0] ? envReads(fns[0]) : [];
    if (fns.length !== 1 || reads.length === 0)
      throw drift(
        SERVER_ENV_PATCH_ID,
        file,
        `one \`function resolveEnvVariables\` reading \`process.env[name]\`; found ${fns.length} function(s), ${reads.length} read(s)`,
        ctx,
      );
    const edits: TextEdit[] = [{ start: 0, end: 0, text: UTILS_IMPORT }];
    for (const r of reads)
      edits.push({
        start: r.getStart(),
        end: r.getEnd(),
        text: `${EXPAND}(${r.getArgumentExpressionOrThrow().getText()})`,
      });
    return { text: applyTextEdits(text, edits), edits: edits.length };
  });
}

function envSpreads(sf: SourceFile) {
  return sf
    .getDescendantsOfKind(SyntaxKind.SpreadAssignment)
    .filter((s) => s.getExpression().getText() === "process.env");
}

export function patchInspectorEnvText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  if (text.includes(INSPECTOR_IMPORT.trim())) return { text, edits: 0 };
  return withSourceFile(file, text, (sf) => {
    const spreads = envSpreads(sf);
    const all = sf
      .getDescendantsOfKind(SyntaxKind.PropertyAccessExpression)
      .filter((p) => p.getText() === "process.env").length;
    // Every use of the backend's environment there is a spread into a child's env; anything else is new.
    if (all !== spreads.length)
      throw drift(
        SERVER_ENV_PATCH_ID,
        file,
        `\`process.env\` only as \`{ ...process.env, … }\` (a STDIO child's env); found ${all} use(s), ${spreads.length} spread(s)`,
        ctx,
      );
    if (spreads.length === 0) return { text, edits: 0 };
    const edits: TextEdit[] = [{ start: 0, end: 0, text: INSPECTOR_IMPORT }];
    for (const s of spreads) edits.push({ start: s.getStart(), end: s.getEnd(), text: `...${INHERIT}()` });
    return { text: applyTextEdits(text, edits), edits: edits.length };
  });
}

export const serverEnvPatch: Patch = {
  id: SERVER_ENV_PATCH_ID,
  description: `A server's \${NAME} expands only to names METAMCP_SERVER_ENV_ALLOW lists, never the app's secrets; inspector processes don't inherit them`,
  apply(tree, ctx) {
    const files = [];
    let note: string | undefined;
    const utils = tree.read(UTILS_FILE);
    if (utils !== undefined && /\bfunction resolveEnvVariables\b/.test(utils)) {
      files.push(
        ...editFile(tree, UTILS_FILE, this.id, ctx, (t) => patchUtilsText(UTILS_FILE, t, ctx)).files,
      );
    } else if (referencesResolve(tree)) {
      throw drift(this.id, UTILS_FILE, "`export function resolveEnvVariables` (other files use it)", ctx);
    } else {
      note = NO_EXPANSION_NOTE;
    }
    files.push(
      ...editFile(tree, INSPECTOR_FILE, this.id, ctx, (t) => patchInspectorEnvText(INSPECTOR_FILE, t, ctx))
        .files,
      ...writeModule(tree, SERVER_ENV_MODULE_FILE, serverEnvModule()),
    );
    return { files, ...(note ? { note } : {}) };
  },
  verify(tree, ctx) {
    const utils = tree.read(UTILS_FILE);
    if (utils !== undefined && /\bfunction resolveEnvVariables\b/.test(utils)) {
      withValidSourceFile(this.id, UTILS_FILE, utils, ctx, (sf) => {
        const fn = resolveFunctions(sf)[0];
        if (
          !utils.includes(UTILS_IMPORT.trim()) ||
          !fn ||
          envReads(fn).length > 0 ||
          !fn.getText().includes(`${EXPAND}(`)
        )
          throw drift(
            this.id,
            UTILS_FILE,
            `resolveEnvVariables to read the environment only through ${EXPAND}`,
            ctx,
          );
      });
    } else if (referencesResolve(tree)) {
      throw drift(this.id, UTILS_FILE, "`export function resolveEnvVariables` (other files use it)", ctx);
    }
    const inspector = requireFile(tree, INSPECTOR_FILE, this.id, ctx);
    withValidSourceFile(this.id, INSPECTOR_FILE, inspector, ctx, (sf) => {
      if (envSpreads(sf).length > 0)
        throw drift(
          this.id,
          INSPECTOR_FILE,
          `no \`...process.env\` left (each one \`...${INHERIT}()\`)`,
          ctx,
        );
    });
    const module = requireFile(tree, SERVER_ENV_MODULE_FILE, this.id, ctx);
    withValidSourceFile(this.id, SERVER_ENV_MODULE_FILE, module, ctx, () => {
      for (const m of [
        "export function databricksExpandableEnv(",
        "export function databricksInheritableEnv(",
      ])
        if (!module.includes(m)) throw drift(this.id, SERVER_ENV_MODULE_FILE, `to contain \`${m}\``, ctx);
    });
  },
};
