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
import { STDIO_SERVERS_MODULE_FILE, stdioServersModule } from "./stdio-servers-module.js";
import { applyTextEdits, propertyName, type TextEdit } from "./text-edits.js";
import { type ArrowFunction, Node, type SourceFile } from "./ts-morph.js";

/**
 * Who may make MetaMCP start a process (docs/stdio-servers.md). Every way a STDIO server's row is written or
 * a process started for a person, read from every stable tag (v2.0.0 … v2.4.22, v2.5.x, main):
 * - `trpc/mcp-servers.impl.ts`, `mcpServersImplementations.{create, bulkImport, update}`: the only callers of
 *   the repository's create / bulkCreate / update with a server type a person chose (the UI, tRPC, the
 *   "import JSON" dialog). `endpoints.impl.ts` also creates a server, always `STREAMABLE_HTTP`; main's
 *   `BOOTSTRAP_*` seeding creates users, keys, namespaces and endpoints, never servers (and the runtime turns
 *   it off unless the app opts in). Each gets our check as its first statement, before upstream's `try`, so
 *   the `TRPCError` FORBIDDEN reaches the client as tRPC's own error (upstream's `catch` would turn it into
 *   `{ success: false }`).
 * - `routers/mcp-proxy/server.ts`: the inspector proxy starts `?transportType=STDIO&command=…` for any
 *   signed-in person, no server row at all. Our guard is mounted right after upstream's
 *   `serverRouter.use(betterAuthMcpMiddleware)` and so runs before every route of that router.
 * v2.0.0–v2.1.1 pass no caller to the implementations: there `managers` lets nobody (a note says so).
 */
export const STDIO_SERVERS_PATCH_ID = "stdio-servers";
export const IMPL_FILE = "apps/backend/src/trpc/mcp-servers.impl.ts";
export const INSPECTOR_FILE = "apps/backend/src/routers/mcp-proxy/server.ts";

const NS = "__databricksStdio";
const IMPL_IMPORT = `import * as ${NS} from "../databricks-stdio-servers";\n`;
const GUARD = "__databricksStdioInspectorGuard";
const INSPECTOR_IMPORT = `import { databricksStdioInspectorGuard as ${GUARD} } from "../../databricks-stdio-servers";\n`;

export const NO_CALLER_NOTE =
  "this release passes no caller to MetaMCP's server implementations (before v2.2.0): with METAMCP_STDIO_SERVERS=managers nobody may create or change STDIO servers; set everyone or off explicitly, or use v2.2.0 or later";

const METHODS = {
  create: (input: string, user: string) => `await ${NS}.assertMayCreateServers([${input}], ${user});`,
  bulkImport: (input: string, user: string) =>
    `await ${NS}.assertMayCreateServers(Object.values(${input}?.mcpServers ?? {}), ${user});`,
  update: (input: string, user: string) => `await ${NS}.assertMayUpdateServer(${input}, ${user});`,
} as const;
type Method = keyof typeof METHODS;

const IMPL_SHAPE =
  "`export const mcpServersImplementations = { create: async (input, userId?) => { … }, bulkImport: …, update: … }`";

/** The three implementations, or a description of what is missing. */
function implMethods(sf: SourceFile): Record<Method, ArrowFunction> | string {
  const decl = sf.getVariableDeclaration("mcpServersImplementations");
  const obj = decl?.getInitializer();
  if (!obj || !Node.isObjectLiteralExpression(obj)) return "no `mcpServersImplementations` object";
  const out: Partial<Record<Method, ArrowFunction>> = {};
  for (const name of Object.keys(METHODS) as Method[]) {
    const props = obj.getProperties().filter((p) => propertyName(p) === name);
    const prop = props[0];
    const fn = prop && Node.isPropertyAssignment(prop) ? prop.getInitializer() : undefined;
    if (props.length !== 1 || !fn || !Node.isArrowFunction(fn) || !fn.isAsync())
      return `\`${name}\` as an async arrow function (found ${props.length})`;
    const body = fn.getBody();
    const params = fn.getParameters();
    if (!Node.isBlock(body) || params.length < 1 || params.length > 2)
      return `\`${name}: async (input, userId?) => { … }\` (found ${params.length} parameters)`;
    out[name] = fn;
  }
  return out as Record<Method, ArrowFunction>;
}

function checkLine(name: Method, fn: ArrowFunction): string {
  const [input, user] = fn.getParameters().map((p) => p.getName());
  return METHODS[name](input!, user ?? "undefined");
}

function indentOf(text: string, pos: number): string {
  return /^[ \t]*/.exec(text.slice(text.lastIndexOf("\n", pos - 1) + 1))?.[0] ?? "      ";
}

export function patchImplText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number; callerless: boolean } {
  return withSourceFile(file, text, (sf) => {
    const methods = implMethods(sf);
    if (typeof methods === "string")
      throw drift(STDIO_SERVERS_PATCH_ID, file, `${IMPL_SHAPE}; ${methods}`, ctx);
    const callerless = Object.values(methods).some((fn) => fn.getParameters().length < 2);
    if (text.includes(IMPL_IMPORT.trim())) return { text, edits: 0, callerless };
    const edits: TextEdit[] = [{ start: 0, end: 0, text: IMPL_IMPORT }];
    for (const [name, fn] of Object.entries(methods) as [Method, ArrowFunction][]) {
      const body = fn.getBody();
      if (!Node.isBlock(body)) continue;
      const first = body.getStatements()[0];
      const indent = first ? indentOf(text, first.getStart()) : "    ";
      edits.push({
        start: body.getStart() + 1,
        end: body.getStart() + 1,
        text:
          `\n${indent}// metamcp-databricks: a STDIO server runs a process in the app; only those METAMCP_STDIO_SERVERS allows.` +
          `\n${indent}${checkLine(name, fn)}`,
      });
    }
    return { text: applyTextEdits(text, edits), edits: edits.length, callerless };
  });
}

/** `X.use(betterAuthMcpMiddleware)` statements at the top level: upstream's session check on the router. */
function authUses(sf: SourceFile) {
  return sf.getStatements().filter((s) => {
    if (!Node.isExpressionStatement(s)) return false;
    const call = s.getExpression();
    if (!Node.isCallExpression(call)) return false;
    const callee = call.getExpression();
    return (
      Node.isPropertyAccessExpression(callee) &&
      callee.getName() === "use" &&
      call.getArguments().length === 1 &&
      call.getArguments()[0]!.getText() === "betterAuthMcpMiddleware"
    );
  });
}

export function patchInspectorText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  if (text.includes(INSPECTOR_IMPORT.trim())) return { text, edits: 0 };
  return withSourceFile(file, text, (sf) => {
    const uses = authUses(sf);
    const use = uses[0];
    if (uses.length !== 1 || !use)
      throw drift(
        STDIO_SERVERS_PATCH_ID,
        file,
        `one top-level \`serverRouter.use(betterAuthMcpMiddleware)\`; found ${uses.length}`,
        ctx,
      );
    const router = use.getText().replace(/\.use\([\s\S]*$/, "");
    const edits: TextEdit[] = [
      { start: 0, end: 0, text: INSPECTOR_IMPORT },
      {
        start: use.getEnd(),
        end: use.getEnd(),
        text:
          `\n// metamcp-databricks: ?transportType=STDIO starts a process in the app; only those METAMCP_STDIO_SERVERS allows.` +
          `\n${router}.use(${GUARD});`,
      },
    ];
    return { text: applyTextEdits(text, edits), edits: edits.length };
  });
}

export const stdioServersPatch: Patch = {
  id: STDIO_SERVERS_PATCH_ID,
  description:
    "Only the people METAMCP_STDIO_SERVERS allows (default: the app's managers) create or change STDIO servers or start inspector processes",
  apply(tree, ctx) {
    const impl = editFile(tree, IMPL_FILE, this.id, ctx, (t) => patchImplText(IMPL_FILE, t, ctx));
    const inspector = editFile(tree, INSPECTOR_FILE, this.id, ctx, (t) =>
      patchInspectorText(INSPECTOR_FILE, t, ctx),
    );
    const files = [
      ...impl.files,
      ...inspector.files,
      ...writeModule(tree, STDIO_SERVERS_MODULE_FILE, stdioServersModule(ctx.schema)),
    ];
    return { files, ...(impl.result.callerless ? { note: NO_CALLER_NOTE } : {}) };
  },
  verify(tree, ctx) {
    const implText = requireFile(tree, IMPL_FILE, this.id, ctx);
    withValidSourceFile(this.id, IMPL_FILE, implText, ctx, (sf) => {
      if (!implText.includes(IMPL_IMPORT.trim()))
        throw drift(this.id, IMPL_FILE, `to contain \`${IMPL_IMPORT.trim()}\``, ctx);
      const methods = implMethods(sf);
      if (typeof methods === "string") throw drift(this.id, IMPL_FILE, `${IMPL_SHAPE}; ${methods}`, ctx);
      for (const [name, fn] of Object.entries(methods) as [Method, ArrowFunction][]) {
        const body = fn.getBody();
        const first = Node.isBlock(body) ? body.getStatements()[0]?.getText() : undefined;
        if (first !== checkLine(name, fn))
          throw drift(this.id, IMPL_FILE, `the STDIO check as the first statement of \`${name}\``, ctx);
      }
    });
    const inspectorText = requireFile(tree, INSPECTOR_FILE, this.id, ctx);
    withValidSourceFile(this.id, INSPECTOR_FILE, inspectorText, ctx, (sf) => {
      const uses = authUses(sf);
      const statements = sf.getStatements();
      const next = uses[0] ? statements[statements.indexOf(uses[0]) + 1]?.getText() : undefined;
      if (
        !inspectorText.includes(INSPECTOR_IMPORT.trim()) ||
        uses.length !== 1 ||
        !next?.endsWith(`.use(${GUARD});`)
      )
        throw drift(
          this.id,
          INSPECTOR_FILE,
          `\`.use(${GUARD})\` right after \`.use(betterAuthMcpMiddleware)\``,
          ctx,
        );
    });
    const module = requireFile(tree, STDIO_SERVERS_MODULE_FILE, this.id, ctx);
    withValidSourceFile(this.id, STDIO_SERVERS_MODULE_FILE, module, ctx, () => {
      for (const m of [
        "export async function assertMayCreateServers(",
        "export async function assertMayUpdateServer(",
        "export async function databricksStdioInspectorGuard(",
      ])
        if (!module.includes(m)) throw drift(this.id, STDIO_SERVERS_MODULE_FILE, `to contain \`${m}\``, ctx);
    });
  },
};
