import {
  drift,
  editFile,
  type Patch,
  type PatchContext,
  requireFile,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits, propertyName, type TextEdit } from "./text-edits.js";
import { type CallExpression, Node, type SourceFile } from "./ts-morph.js";

/**
 * The Databricks identity in MetaMCP (docs/identity.md): wires OUR better-auth plugin
 * (overlay/apps/backend/src/databricks-identity.ts, copied into the tree by `prepare` before the patches)
 * into upstream's own auth setup, apps/backend/src/auth.ts:
 * - `import { bindDatabricksIdentity, databricksIdentity } from "./databricks-identity";`
 * - `databricksIdentity()` appended to `betterAuth({ plugins: [...] })`, or `plugins: [databricksIdentity()]`
 *   added where upstream has no plugins yet (v2.0.0–v2.1.1);
 * - `export const auth = bindDatabricksIdentity(betterAuth({...}))`: the module keeps the instance so code
 *   outside better-auth's endpoints can find or create an identity's user through it.
 * Every stable MetaMCP 2 release has `export const auth = betterAuth({ ... })` there (read from each tag);
 * anything else is drift (exit 3).
 *
 * What upstream's sign-up hook makes of our user creation is recorded as a count: from v2.4.14 the hook
 * tells SSO sign-ups (a path containing `/callback/`, as ours) from email/password ones, so "disable
 * sign-up" leaves ours alone; before, one switch governs every new user.
 */
export const IDENTITY_PATCH_ID = "databricks-identity";
export const AUTH_FILE = "apps/backend/src/auth.ts";
/** Our module, at the path upstream's auth.ts imports it from. */
export const IDENTITY_MODULE_FILE = "apps/backend/src/databricks-identity.ts";
const IMPORT = `import { bindDatabricksIdentity, databricksIdentity } from "./databricks-identity";\n`;
const PLUGIN_CALL = "databricksIdentity()";
const BIND = "bindDatabricksIdentity";
/** What the module must export for the edits above (and for the other identity patches). */
export const MODULE_EXPORTS = [
  "databricksIdentity",
  "bindDatabricksIdentity",
  "trustedIdentity",
  "findOrCreateIdentityUser",
];

export const KNOWN_FORM =
  "exactly one `export const auth = betterAuth({ ... })` whose options are an object literal, with " +
  "`plugins` absent or an array literal";

/** `betterAuth({...})` calls that initialise `auth` (possibly already wrapped by our bind). */
function authCalls(sf: SourceFile): CallExpression[] {
  const found: CallExpression[] = [];
  sf.forEachDescendant((node) => {
    if (!Node.isCallExpression(node) || node.getExpression().getText() !== "betterAuth") return;
    const first = node.getArguments()[0];
    if (!first || !Node.isObjectLiteralExpression(first)) return;
    let holder: Node | undefined = node.getParent();
    if (holder && Node.isCallExpression(holder) && holder.getExpression().getText() === BIND)
      holder = holder.getParent();
    if (holder && Node.isVariableDeclaration(holder) && holder.getName() === "auth") found.push(node);
  });
  return found;
}

/** Upstream's hook tells SSO sign-ups apart (v2.4.14+), so "disable sign-up" does not stop ours. */
export function separatesSsoSignup(authText: string): boolean {
  return authText.includes("isSsoSignupDisabled");
}

export function patchAuthText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number; pluginsAdded: boolean } {
  if (text.includes(PLUGIN_CALL)) return { text, edits: 0, pluginsAdded: false };
  return withSourceFile(file, text, (sf) => {
    const calls = authCalls(sf);
    if (calls.length !== 1) throw drift(IDENTITY_PATCH_ID, file, `${KNOWN_FORM}; found ${calls.length}`, ctx);
    const call = calls[0]!;
    const options = call.getArguments()[0]!;
    if (!Node.isObjectLiteralExpression(options)) throw drift(IDENTITY_PATCH_ID, file, KNOWN_FORM, ctx);
    const edits: TextEdit[] = [{ start: 0, end: 0, text: IMPORT }];
    const plugins = options.getProperties().find((p) => propertyName(p) === "plugins");
    let pluginsAdded = false;
    if (!plugins) {
      // First property: where it lands does not matter to better-auth; at the top it reads as ours.
      const first = options.getProperties()[0];
      const at = first ? first.getStart() : options.getStart() + 1;
      edits.push({ start: at, end: at, text: `plugins: [${PLUGIN_CALL}],\n  ` });
      pluginsAdded = true;
    } else {
      const array = Node.isPropertyAssignment(plugins) ? plugins.getInitializer() : undefined;
      if (!array || !Node.isArrayLiteralExpression(array))
        throw drift(IDENTITY_PATCH_ID, file, `${KNOWN_FORM}; \`plugins\` is ${plugins.getText()}`, ctx);
      const elements = array.getElements();
      const last = elements[elements.length - 1];
      if (last) {
        // After the last element (and its trailing comma, if any).
        const next = last.getNextSibling();
        const hasComma = next?.getText() === ",";
        const at = hasComma ? next!.getEnd() : last.getEnd();
        edits.push({ start: at, end: at, text: `${hasComma ? "" : ","}\n    ${PLUGIN_CALL},` });
      } else {
        const at = array.getStart() + 1;
        edits.push({ start: at, end: at, text: PLUGIN_CALL });
      }
    }
    edits.push({ start: call.getStart(), end: call.getStart(), text: `${BIND}(` });
    edits.push({ start: call.getEnd(), end: call.getEnd(), text: ")" });
    return { text: applyTextEdits(text, edits), edits: edits.length, pluginsAdded };
  });
}

/** The final auth.ts: valid; imports our module; the one `betterAuth` call has our plugin and is bound. */
export function verifyAuthText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(IDENTITY_PATCH_ID, file, text, ctx, (sf) => {
    const imported = sf.getImportDeclarations().some((d) => {
      const names = d.getNamedImports().map((s) => s.getName());
      return (
        d.getModuleSpecifierValue() === "./databricks-identity" &&
        names.includes("databricksIdentity") &&
        names.includes(BIND)
      );
    });
    if (!imported) throw drift(IDENTITY_PATCH_ID, file, `the import ${IMPORT.trim()}`, ctx);
    const calls = authCalls(sf);
    if (calls.length !== 1) throw drift(IDENTITY_PATCH_ID, file, KNOWN_FORM, ctx);
    const call = calls[0]!;
    const parent = call.getParent();
    if (!parent || !Node.isCallExpression(parent) || parent.getExpression().getText() !== BIND)
      throw drift(IDENTITY_PATCH_ID, file, `\`export const auth = ${BIND}(betterAuth({ ... }))\``, ctx);
    const options = call.getArguments()[0]!;
    const plugins = Node.isObjectLiteralExpression(options)
      ? options.getProperties().find((p) => propertyName(p) === "plugins")
      : undefined;
    const array = plugins && Node.isPropertyAssignment(plugins) ? plugins.getInitializer() : undefined;
    const hasOurs =
      array &&
      Node.isArrayLiteralExpression(array) &&
      array.getElements().some((e) => e.getText() === PLUGIN_CALL);
    if (!hasOurs) throw drift(IDENTITY_PATCH_ID, file, `\`${PLUGIN_CALL}\` in betterAuth's plugins`, ctx);
  });
}

/** Our module is in the tree (the overlay put it there) and exports what auth.ts and the others use. */
export function verifyIdentityModule(text: string | undefined, ctx: PatchContext): void {
  if (text === undefined)
    throw drift(
      IDENTITY_PATCH_ID,
      IDENTITY_MODULE_FILE,
      "our module, copied from overlay/ by prepare (is this tool's overlay/ folder complete?)",
      ctx,
    );
  const missing = MODULE_EXPORTS.filter(
    (name) => !new RegExp(`export (async )?function ${name}\\b`).test(text),
  );
  if (missing.length)
    throw drift(IDENTITY_PATCH_ID, IDENTITY_MODULE_FILE, `exports ${missing.join(", ")}`, ctx);
}

export const databricksIdentityPatch: Patch = {
  id: IDENTITY_PATCH_ID,
  description:
    "MetaMCP's better-auth signs in the Databricks identity the app's router vouches for (docs/identity.md)",
  apply(tree, ctx) {
    const { original, files } = editFile(tree, AUTH_FILE, this.id, ctx, (text) =>
      patchAuthText(AUTH_FILE, text, ctx),
    );
    return { files, counts: { "SSO-aware sign-up hook": separatesSsoSignup(original) ? 1 : 0 } };
  },
  verify(tree, ctx) {
    verifyAuthText(AUTH_FILE, requireFile(tree, AUTH_FILE, this.id, ctx), ctx);
    verifyIdentityModule(tree.read(IDENTITY_MODULE_FILE), ctx);
  },
};
