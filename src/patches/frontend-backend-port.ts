import { BACKEND_PORT_VARIABLE, FRONTEND_BACKEND_PORT_PATCH_ID, ORIGIN_FORM_NOTE } from "./instance-ports.js";
import { drift, type Patch, type PatchContext, withSourceFile, withValidSourceFile } from "./patch.js";
import { applyTextEdits, type TextEdit } from "./text-edits.js";
import { Node, type SourceFile } from "./ts-morph.js";

/**
 * Next's middleware checks every private page's session at the backend, server-side, at a URL upstream
 * hard-codes: `betterFetch("/api/auth/get-session", { baseURL: "http://localhost:12009", … })`
 * (`apps/frontend/middleware.ts`, v2.0.6 to main). With the backend's port moved (backend-loopback:
 * METAMCP_BACKEND_PORT, for a second instance on one machine), a second instance's frontend would ask the
 * FIRST instance's backend, and nobody when that one is replaced. This patch makes that literal
 * `` `http://localhost:${Number(process.env.METAMCP_BACKEND_PORT) || 12009}` ``: upstream's URL without the
 * variable. Next's middleware reads `process.env` when it runs (only `NEXT_PUBLIC_*` is inlined at build),
 * so one build serves any port.
 *
 * v2.0.0–v2.0.5 check the session at `request.nextUrl.origin` instead: through Next's own rewrite of
 * `/api/auth/*` to `localhost:12009`, which Next bakes into its routes manifest at build time. There the
 * patch changes nothing and says so (a note): those releases run one instance per machine. Next's rewrites
 * themselves are left as they are in every release: our router sends every path they rewrite to the backend
 * straight (src/runtime/router.ts BACKEND_PREFIXES), so a request through the app never meets them.
 */
export { FRONTEND_BACKEND_PORT_PATCH_ID, ORIGIN_FORM_NOTE };
export const FRONTEND_MIDDLEWARE_FILE = "apps/frontend/middleware.ts";
export const UPSTREAM_BACKEND_URL = "http://localhost:12009";
const OUR_URL = `\`http://localhost:\${Number(process.env.${BACKEND_PORT_VARIABLE}) || 12009}\``;

const KNOWN =
  '`baseURL: "http://localhost:12009"` in the middleware\'s session check (v2.0.6 on), or a middleware that names no backend port (`baseURL: request.nextUrl.origin`, v2.0.0–v2.0.5)';

/** Every string literal starting with upstream's backend URL, with its value. */
function backendUrlLiterals(sf: SourceFile): { node: Node; value: string }[] {
  const found: { node: Node; value: string }[] = [];
  sf.forEachDescendant((node) => {
    if (Node.isStringLiteral(node) && node.getLiteralValue().startsWith(UPSTREAM_BACKEND_URL))
      found.push({ node, value: node.getLiteralValue() });
  });
  return found;
}

export function patchMiddlewareText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number; note?: string } {
  return withSourceFile(file, text, (sf) => {
    const literals = backendUrlLiterals(sf);
    if (!literals.length) {
      if (text.includes(OUR_URL)) return { text, edits: 0 };
      // The port in some other form (a template, a constant): a call this patch has not looked at.
      if (/\b12009\b/.test(text)) throw drift(FRONTEND_BACKEND_PORT_PATCH_ID, file, KNOWN, ctx);
      return { text, edits: 0, note: ORIGIN_FORM_NOTE };
    }
    const edits: TextEdit[] = literals.map(({ node, value }) => {
      // A longer URL (a path of its own): another call, not the session check's base URL.
      if (value !== UPSTREAM_BACKEND_URL)
        throw drift(FRONTEND_BACKEND_PORT_PATCH_ID, file, `${KNOWN}; found ${node.getText()}`, ctx);
      return { start: node.getStart(), end: node.getEnd(), text: OUR_URL };
    });
    return { text: applyTextEdits(text, edits), edits: edits.length };
  });
}

/** The final tree's middleware: valid, and no `"http://localhost:12009"` left in it. */
export function verifyMiddlewareText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(FRONTEND_BACKEND_PORT_PATCH_ID, file, text, ctx, (sf) => {
    const left = backendUrlLiterals(sf);
    if (left.length)
      throw drift(
        FRONTEND_BACKEND_PORT_PATCH_ID,
        file,
        `the backend's URL taken from ${BACKEND_PORT_VARIABLE}; found ${left[0]!.node.getText()}`,
        ctx,
      );
  });
}

export const frontendBackendPortPatch: Patch = {
  id: FRONTEND_BACKEND_PORT_PATCH_ID,
  description: `Next's middleware reaches the backend at ${BACKEND_PORT_VARIABLE} (default upstream's 12009)`,
  apply(tree, ctx) {
    const text = tree.read(FRONTEND_MIDDLEWARE_FILE);
    // No middleware (no release so far): nothing of the frontend reaches the backend's port.
    if (text === undefined) return { files: [] };
    const out = patchMiddlewareText(FRONTEND_MIDDLEWARE_FILE, text, ctx);
    if (out.text !== text) tree.write(FRONTEND_MIDDLEWARE_FILE, out.text);
    return {
      files: out.edits ? [{ path: FRONTEND_MIDDLEWARE_FILE, edits: out.edits }] : [],
      ...(out.note ? { note: out.note } : {}),
    };
  },
  verify(tree, ctx) {
    const text = tree.read(FRONTEND_MIDDLEWARE_FILE);
    if (text !== undefined) verifyMiddlewareText(FRONTEND_MIDDLEWARE_FILE, text, ctx);
  },
};
