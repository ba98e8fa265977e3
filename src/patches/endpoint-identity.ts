import {
  ENDPOINT_IDENTITY_MODULE_FILE,
  ENDPOINT_IDENTITY_ROUTE,
  IDENTITY_MODULE_FILE,
  SCHEMA_MODULE_FILE,
  schemaModule,
} from "./endpoint-identity-module.js";
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
import { applyTextEdits, forget, parseTypeScript, type TextEdit } from "./text-edits.js";
import { Node, type SourceFile } from "./ts-morph.js";

/**
 * MCP clients with only a Databricks token: an endpoint may accept the workspace identity the Apps proxy
 * asserts instead of a MetaMCP API key (docs/identity.md, "MCP clients"). Three changes:
 * - our module `apps/backend/src/databricks-endpoint-identity.ts` (overlay/, copied in by prepare) learns the
 *   app's schema from `databricks-schema.ts`, which the patch writes;
 * - MetaMCP's `authenticateApiKey` (the middleware every public endpoint route runs: streamable HTTP, SSE,
 *   OpenAPI) first asks it: `if (await __databricksEndpointIdentity(req, res, next)) return;` — it answers
 *   only for an endpoint that accepts the identity and a request whose identity our router vouches for,
 *   else upstream's code runs unchanged;
 * - it relies on `apps/backend/src/databricks-identity.ts` (overlay/, the `databricks-identity` patch's
 *   module: `trustedIdentity`, `findOrCreateIdentityUser`); verify fails when it is missing;
 * - the backend entry mounts its small settings route (`GET|PUT /metamcp/_databricks/endpoint-identity/<name>`)
 *   right after `const app = express()`.
 *
 * The middleware's shapes, read from every stable tag:
 * - v2.4.0 on (and main): `middleware/api-key-oauth.middleware.ts`, API key and OAuth, 4 conditions;
 * - v2.2.0–v2.3.8: `middleware/api-key-auth.middleware.ts`, API key only;
 * - v2.0.0–v2.1.1: no shared middleware (each router checks keys itself, and endpoints have no owner): the
 *   feature is not offered there and the patch says so (a note in prepare's output and the manifest).
 * In the first two, `export const authenticateApiKey = async (req, res, next) => { ... }` is the same.
 */
export const ENDPOINT_IDENTITY_PATCH_ID = "endpoint-identity";
export const MIDDLEWARE_FILES = [
  "apps/backend/src/middleware/api-key-oauth.middleware.ts",
  "apps/backend/src/middleware/api-key-auth.middleware.ts",
] as const;
export const BACKEND_ENTRY_FILE = "apps/backend/src/index.ts";
/** Where v2.0.0–v2.1.1 define `authenticateApiKey` locally (the releases that lack the feature). */
const PER_ROUTER_FILES = [
  "apps/backend/src/routers/public-metamcp/streamable-http.ts",
  "apps/backend/src/routers/public-metamcp/sse.ts",
];

const HOOK = "__databricksEndpointIdentity";
const SETTINGS = "__databricksEndpointIdentitySettings";
const MIDDLEWARE_IMPORT = `import { acceptDatabricksIdentity as ${HOOK} } from "../databricks-endpoint-identity";\n`;
const ENTRY_IMPORT = `import { databricksEndpointIdentitySettings as ${SETTINGS} } from "./databricks-endpoint-identity";\n`;

export const UNSUPPORTED_NOTE =
  "not in this release: MetaMCP before v2.2.0 checks API keys inside each router and has no endpoint owners; " +
  "MCP clients need a MetaMCP API key (use v2.2.0 or later for Databricks identity on endpoints)";

/** `authenticateApiKey` as exported: an arrow function or function expression, or a function declaration. */
function authenticateFunction(sf: SourceFile) {
  const found = [];
  for (const decl of sf.getVariableDeclarations()) {
    if (decl.getName() !== "authenticateApiKey") continue;
    const init = decl.getInitializer();
    if (init && (Node.isArrowFunction(init) || Node.isFunctionExpression(init))) found.push(init);
  }
  const fn = sf.getFunction("authenticateApiKey");
  if (fn) found.push(fn);
  return found;
}

const MIDDLEWARE_SHAPE =
  "one `export const authenticateApiKey = async (req, res, next) => { ... }` (MetaMCP v2.2.0 and later)";

function hookLine(req: string, res: string, next: string): string {
  return `if (await ${HOOK}(${req}, ${res}, ${next})) return;`;
}

export function patchMiddlewareText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  if (text.includes(MIDDLEWARE_IMPORT.trim())) return { text, edits: 0 };
  return withSourceFile(file, text, (sf) => {
    const fns = authenticateFunction(sf);
    const fn = fns[0];
    const params = fn?.getParameters() ?? [];
    const body = fn?.getBody();
    if (fns.length !== 1 || !fn || params.length !== 3 || !body || !Node.isBlock(body) || !fn.isAsync()) {
      throw drift(ENDPOINT_IDENTITY_PATCH_ID, file, `${MIDDLEWARE_SHAPE}; found ${fns.length}`, ctx);
    }
    const [req, res, next] = params.map((p) => p.getName());
    const firstStatement = body.getStatements()[0];
    const indent = firstStatement
      ? (/^[ \t]*/.exec(text.slice(text.lastIndexOf("\n", firstStatement.getStart()) + 1))?.[0] ?? "  ")
      : "  ";
    const edits: TextEdit[] = [
      { start: 0, end: 0, text: MIDDLEWARE_IMPORT },
      {
        start: body.getStart() + 1,
        end: body.getStart() + 1,
        text:
          `\n${indent}// metamcp-databricks: an endpoint that accepts the Databricks workspace identity lets a` +
          `\n${indent}// request the Apps proxy signed in through without an API key (databricks-endpoint-identity.ts).` +
          `\n${indent}${hookLine(req!, res!, next!)}`,
      },
    ];
    return { text: applyTextEdits(text, edits), edits: edits.length };
  });
}

/** `const app = express()` at the top level of the backend entry: the one Express app. */
function expressApps(sf: SourceFile): string[] {
  const names: string[] = [];
  for (const stmt of sf.getVariableStatements()) {
    for (const decl of stmt.getDeclarations()) {
      const init = decl.getInitializer();
      if (init && Node.isCallExpression(init) && init.getExpression().getText() === "express")
        names.push(decl.getName());
    }
  }
  return names;
}

export function patchEntryText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  if (text.includes(ENTRY_IMPORT.trim())) return { text, edits: 0 };
  return withSourceFile(file, text, (sf) => {
    const apps = expressApps(sf);
    if (apps.length !== 1)
      throw drift(
        ENDPOINT_IDENTITY_PATCH_ID,
        file,
        `one top-level \`const app = express()\`; found ${apps.length}`,
        ctx,
      );
    const app = apps[0]!;
    const stmt = sf
      .getVariableStatements()
      .find((s) => s.getDeclarations().some((d) => d.getName() === app))!;
    const edits: TextEdit[] = [
      { start: 0, end: 0, text: ENTRY_IMPORT },
      {
        start: stmt.getEnd(),
        end: stmt.getEnd(),
        text:
          `\n\n// metamcp-databricks: whether an endpoint accepts the Databricks workspace identity (GET), set by its owner (PUT).` +
          `\n${app}.use(${JSON.stringify(ENDPOINT_IDENTITY_ROUTE)}, ${SETTINGS});`,
      },
    ];
    return { text: applyTextEdits(text, edits), edits: edits.length };
  });
}

function middlewareFile(tree: { read(f: string): string | undefined }): string | undefined {
  return MIDDLEWARE_FILES.find((f) => tree.read(f) !== undefined);
}

/** v2.0.0–v2.1.1: `authenticateApiKey` defined inside the routers, no shared middleware. */
function isPerRouterRelease(tree: { read(f: string): string | undefined }): boolean {
  return PER_ROUTER_FILES.some((f) => /\bconst authenticateApiKey\s*=/.test(tree.read(f) ?? ""));
}

function verifyParses(file: string, text: string, must: string[], ctx: PatchContext): void {
  withValidSourceFile(ENDPOINT_IDENTITY_PATCH_ID, file, text, ctx, () => {
    for (const m of must) {
      if (!text.includes(m)) throw drift(ENDPOINT_IDENTITY_PATCH_ID, file, `to contain \`${m}\``, ctx);
    }
  });
}

export const endpointIdentityPatch: Patch = {
  id: ENDPOINT_IDENTITY_PATCH_ID,
  description:
    "MCP endpoints may accept the Databricks identity the Apps proxy asserts instead of a MetaMCP API key (per endpoint)",
  apply(tree, ctx) {
    const middleware = middlewareFile(tree);
    if (!middleware) {
      // Our module is in the tree (overlay/) whether or not the release can use it: it must still compile.
      if (isPerRouterRelease(tree))
        return {
          files: writeModule(tree, SCHEMA_MODULE_FILE, schemaModule(ctx.schema)),
          note: UNSUPPORTED_NOTE,
        };
      throw drift(
        ENDPOINT_IDENTITY_PATCH_ID,
        MIDDLEWARE_FILES[0],
        `${MIDDLEWARE_SHAPE} in ${MIDDLEWARE_FILES.join(" or ")}`,
        ctx,
      );
    }
    const files = [
      ...editFile(tree, middleware, this.id, ctx, (t) => patchMiddlewareText(middleware, t, ctx)).files,
      ...editFile(tree, BACKEND_ENTRY_FILE, this.id, ctx, (t) => patchEntryText(BACKEND_ENTRY_FILE, t, ctx))
        .files,
      ...writeModule(tree, SCHEMA_MODULE_FILE, schemaModule(ctx.schema)),
    ];
    return { files };
  },
  verify(tree, ctx) {
    const middleware = middlewareFile(tree);
    if (!middleware) {
      if (isPerRouterRelease(tree)) return;
      throw drift(ENDPOINT_IDENTITY_PATCH_ID, MIDDLEWARE_FILES[0], `the file to exist`, ctx);
    }
    const mwText = requireFile(tree, middleware, this.id, ctx);
    verifyParses(middleware, mwText, [MIDDLEWARE_IMPORT.trim()], ctx);
    const sf = parseTypeScript(middleware, mwText);
    try {
      const fns = authenticateFunction(sf);
      const body = fns[0]?.getBody();
      const first = body && Node.isBlock(body) ? body.getStatements()[0]?.getText() : undefined;
      if (fns.length !== 1 || !first?.startsWith(`if (await ${HOOK}(`))
        throw drift(
          this.id,
          middleware,
          `the identity check as the first statement of authenticateApiKey`,
          ctx,
        );
    } finally {
      forget(sf);
    }
    verifyParses(
      BACKEND_ENTRY_FILE,
      requireFile(tree, BACKEND_ENTRY_FILE, this.id, ctx),
      [ENTRY_IMPORT.trim(), `.use(${JSON.stringify(ENDPOINT_IDENTITY_ROUTE)}, ${SETTINGS});`],
      ctx,
    );
    const module = requireFile(tree, ENDPOINT_IDENTITY_MODULE_FILE, this.id, ctx);
    verifyParses(
      ENDPOINT_IDENTITY_MODULE_FILE,
      module,
      [
        "export async function acceptDatabricksIdentity(",
        "export async function databricksEndpointIdentitySettings(",
      ],
      ctx,
    );
    verifyParses(
      SCHEMA_MODULE_FILE,
      requireFile(tree, SCHEMA_MODULE_FILE, this.id, ctx),
      [`export const DATABRICKS_SCHEMA = ${JSON.stringify(ctx.schema)};`],
      ctx,
    );
    verifyParses(
      IDENTITY_MODULE_FILE,
      requireFile(tree, IDENTITY_MODULE_FILE, this.id, ctx),
      ["export function trustedIdentity(", "export async function findOrCreateIdentityUser("],
      ctx,
    );
  },
};
