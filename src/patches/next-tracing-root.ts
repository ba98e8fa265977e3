import { KNOWN_NEXT_CONFIG_SHAPE, NEXT_CONFIG_FILE, nextConfigObject } from "./next-config.js";
import {
  drift,
  oneFilePatch,
  type Patch,
  type PatchContext,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits, type TextEdit } from "./text-edits.js";
import { Node, type ObjectLiteralExpression, type SourceFile } from "./ts-morph.js";

export { NEXT_CONFIG_FILE };

/**
 * Next 15.5 picks its workspace root (`outputFileTracingRoot`) as the directory of the OUTERMOST lockfile
 * above the frontend (`next/dist/lib/find-root.js`: it keeps walking up while it finds one; 15.4 and before
 * stopped at the nearest). The build dir sits inside this project's clone, whose `package-lock.json` is
 * above upstream's `pnpm-lock.yaml`: Next then traces from the clone, nests the standalone server at
 * `.next/standalone/build/metamcp/apps/frontend/server.js` and may copy files of OUR node_modules into
 * the app. MetaMCP main (Next ^15.5.12) fails `build` that way. Upstream's monorepo root is the right
 * root on every release: this patch says so in next.config.js, which also silences Next's "multiple
 * lockfiles" warning at its cause.
 *
 * Upstream's shape (every stable tag v2.0.0 … v2.5.x and main): `apps/frontend/next.config.js`, an ES
 * module (`"type": "module"`), `const nextConfig = { output: "standalone", … }` and
 * `export default nextConfig`. The root is computed from the file's own URL, so the tree can move.
 */
export const NEXT_TRACING_ROOT_PATCH_ID = "next-tracing-root";
/** A name of ours, so it cannot collide with an import of upstream's. */
const IMPORT_NAME = "metamcpDatabricksFileURLToPath";
export const TRACING_ROOT_IMPORT = `import { fileURLToPath as ${IMPORT_NAME} } from "node:url";`;
/** apps/frontend/next.config.js → the monorepo root, two folders up. */
export const TRACING_ROOT_VALUE = `${IMPORT_NAME}(new URL("../..", import.meta.url))`;
const PROPERTY = "outputFileTracingRoot";

export const KNOWN_NEXT_CONFIG = `${KNOWN_NEXT_CONFIG_SHAPE} (MetaMCP v2.0.0 and later), without an \`outputFileTracingRoot\` of upstream's own`;

const hasOurImport = (sf: SourceFile) =>
  sf.getImportDeclarations().some((d) => d.getText() === TRACING_ROOT_IMPORT);

function ourRoot(obj: ObjectLiteralExpression): "ours" | "theirs" | "none" {
  const p = obj.getProperty(PROPERTY);
  if (!p) return "none";
  return Node.isPropertyAssignment(p) && p.getInitializer()?.getText() === TRACING_ROOT_VALUE
    ? "ours"
    : "theirs";
}

export function patchNextConfigText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  return withSourceFile(file, text, (sf) => {
    const obj = nextConfigObject(sf);
    if (!obj) throw drift(NEXT_TRACING_ROOT_PATCH_ID, file, KNOWN_NEXT_CONFIG, ctx);
    const root = ourRoot(obj);
    if (root === "theirs") {
      throw drift(
        NEXT_TRACING_ROOT_PATCH_ID,
        file,
        `${KNOWN_NEXT_CONFIG}; found \`${obj.getProperty(PROPERTY)?.getText()}\``,
        ctx,
      );
    }
    const edits: TextEdit[] = [];
    if (!hasOurImport(sf)) edits.push({ start: 0, end: 0, text: `${TRACING_ROOT_IMPORT}\n` });
    if (root === "none") {
      const output = obj.getPropertyOrThrow("output");
      // After `output: "standalone",` on a line of its own, indented as upstream indents it.
      const lineStart = text.lastIndexOf("\n", output.getStart()) + 1;
      const indent = text.slice(lineStart, output.getStart());
      const after = text.indexOf("\n", output.getEnd());
      const at = after === -1 ? output.getEnd() : after;
      const comma = text.slice(output.getEnd(), at).trim() === "," ? "" : ",";
      edits.push({
        start: at,
        end: at,
        text:
          `${comma}\n${indent}// metamcp-databricks: trace from MetaMCP's own root, not from the lockfile of a project it sits in.` +
          `\n${indent}${PROPERTY}: ${TRACING_ROOT_VALUE},`,
      });
    }
    return edits.length ? { text: applyTextEdits(text, edits), edits: edits.length } : { text, edits: 0 };
  });
}

/** What `verify` checks: valid code, upstream's shape, our root and its import. */
export function verifyNextConfigText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(NEXT_TRACING_ROOT_PATCH_ID, file, text, ctx, (sf) => {
    const obj = nextConfigObject(sf);
    if (!obj || ourRoot(obj) !== "ours" || !hasOurImport(sf)) {
      throw drift(
        NEXT_TRACING_ROOT_PATCH_ID,
        file,
        `${KNOWN_NEXT_CONFIG}, patched with \`${PROPERTY}: ${TRACING_ROOT_VALUE}\` and \`${TRACING_ROOT_IMPORT}\``,
        ctx,
      );
    }
  });
}

export const nextTracingRootPatch: Patch = oneFilePatch({
  id: NEXT_TRACING_ROOT_PATCH_ID,
  description: "Next traces the frontend from MetaMCP's own root, wherever the build dir sits",
  file: NEXT_CONFIG_FILE,
  patchText: patchNextConfigText,
  verifyText: verifyNextConfigText,
});
