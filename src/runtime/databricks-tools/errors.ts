import type { McpKind } from "./paths.js";

/**
 * Sentences a person understands for what Databricks (or the gateway) refused (design §5). They reach the
 * person inside MCP where the protocol allows: a refused `tools/call` is answered as the tool's own error
 * result (`isError`), so the agent reads the sentence instead of a transport failure.
 */

export interface ExplainInput {
  status: number;
  /** The workspace's answer, parsed when it was JSON (`{error_code, message}`), else its text. */
  body: unknown;
  kind: McpKind;
  ids: string[];
  /** The service principal's application id: who called, unless `caller` says a person did. */
  principalId: string;
  /** The person whose own token (#identity=user) was refused: named in the grant instead of the app. */
  caller?: string;
}

const quoted = (s: string) => `\`${s}\``;

function fields(body: unknown): { code: string; message: string } {
  if (body && typeof body === "object") {
    const b = body as { error_code?: unknown; message?: unknown; error?: unknown };
    return {
      code: typeof b.error_code === "string" ? b.error_code : "",
      message:
        typeof b.message === "string" ? b.message : typeof b.error === "string" ? (b.error as string) : "",
    };
  }
  return { code: "", message: typeof body === "string" ? body.slice(0, 300) : "" };
}

const KIND_NAMES: Record<McpKind, string> = {
  genie: "Genie",
  sql: "Databricks SQL",
  functions: "Unity Catalog functions",
  "vector-search": "Vector Search",
  external: "external MCP (Unity Catalog connection)",
};

/** The grants `principal` needs for this server (docs/databricks-tools.md "Grants"). */
export function grantsFor(kind: McpKind, ids: string[], principal: string): string {
  const to = `TO ${quoted(principal)}`;
  const [a, b, c] = ids;
  switch (kind) {
    case "genie":
      return a
        ? `CAN VIEW on Genie space ${a}, SELECT on its tables and CAN USE on its SQL warehouse, for ${principal}`
        : `CAN VIEW on the Genie spaces it should ask, SELECT on their tables and CAN USE on their SQL warehouses, for ${principal}`;
    case "sql":
      return `CAN USE on a SQL warehouse, and USE CATALOG, USE SCHEMA, SELECT on the tables it queries, for ${principal}`;
    case "functions":
      return `GRANT USE CATALOG ON CATALOG ${a} ${to}; GRANT USE SCHEMA ON SCHEMA ${a}.${b} ${to}; GRANT EXECUTE ON ${c ? `FUNCTION ${a}.${b}.${c}` : `SCHEMA ${a}.${b}`} ${to}`;
    case "vector-search":
      return `GRANT USE CATALOG ON CATALOG ${a} ${to}; GRANT USE SCHEMA ON SCHEMA ${a}.${b} ${to}; GRANT SELECT ON ${c ? `TABLE ${a}.${b}.${c}` : `the index in ${a}.${b}`} ${to}`;
    case "external":
      return `GRANT USE CONNECTION ON CONNECTION ${a} ${to}`;
  }
}

const where = (kind: McpKind, ids: string[]) =>
  `${KIND_NAMES[kind]}${ids.length ? ` ${quoted(ids.join("."))}` : ""}`;

/** The sentence for a refusal the workspace answered, or undefined when the status needs none. */
export function explain(input: ExplainInput): string | undefined {
  const { status, kind, ids, caller } = input;
  const principalId = caller ?? input.principalId;
  const { code, message } = fields(input.body);
  const who = caller ?? `the app (service principal ${principalId})`;
  const detail = message ? ` (Databricks said: ${message})` : "";
  const notOffered = `this workspace does not offer Databricks' managed MCP server for ${KIND_NAMES[kind]} (the Managed MCP Servers preview is off, or it is not available in this region)${detail}`;
  if (status === 401)
    return caller
      ? `the workspace did not accept ${who}'s own token (HTTP 401)${detail}: sign in again`
      : `the workspace did not accept ${who}'s token (HTTP 401)${detail}: check the app's service principal`;
  if (status === 403) {
    const scope = /required scopes?:?\s*([\w.,\s-]+)/i.exec(message)?.[1]?.trim();
    if (scope)
      return caller
        ? `Databricks refused ${who}'s token for ${KIND_NAMES[kind]}: the app's user authorization lacks scope ${quoted(scope)}${detail}: add it to the app's user_api_scopes (APP_USER_API_SCOPES) and redeploy`
        : `Databricks refused ${who}'s token for ${KIND_NAMES[kind]}: it lacks OAuth scope ${quoted(scope)}${detail}`;
    return `Databricks refused ${who} on ${where(kind, ids)}${detail}: ask the owner for ${grantsFor(kind, ids, principalId)}`;
  }
  if (status === 404) {
    if (code === "RESOURCE_DOES_NOT_EXIST" || code === "NOT_FOUND")
      return `${where(kind, ids)} does not exist in this workspace, or ${who} may not see it${detail}`;
    return notOffered;
  }
  if (status === 400) {
    if (code === "FEATURE_DISABLED" || /administratively suspended|not enabled|preview/i.test(message))
      return notOffered;
    return `the workspace refused the request to ${where(kind, ids)} (HTTP 400)${detail}`;
  }
  if (code === "FEATURE_DISABLED") return notOffered;
  return undefined;
}

/** The gateway's own refusals (never forwarded). */
export const REFUSALS = {
  path: (reason: string) =>
    `not a Databricks managed MCP server path (${reason}): only /api/2.0/mcp/… on this app's own workspace is reachable`,
  noUserToken:
    "this per-person Databricks server (#identity=user) needs your own workspace token, and none came with this request: the app needs user authorization (user_api_scopes, APP_USER_API_SCOPES) and the call must come through the Apps proxy. It is never called as the app's service principal instead",
  userRoute:
    "per-person servers need an MCP session (streamable HTTP or SSE): a per-person Databricks server (#identity=user) is not called on the OpenAPI route (one connection for every caller) nor by work no person's request started, nor as the app's service principal instead",
  otherSession:
    "this Databricks MCP session was opened by someone else: it is never used for another person's request",
  appIdentityOff:
    "servers on this app's Databricks workspace that run as the app's service principal are turned off (METAMCP_DATABRICKS_APP_IDENTITY=off)",
  identity: (value: string) =>
    `unknown identity ${JSON.stringify(value.slice(0, 40))} for a Databricks server: use no fragment (the app's service principal)`,
  redirect: (status: number) =>
    `the workspace answered with a redirect (HTTP ${status}), which is never followed: a token goes only to this app's workspace`,
  unreachable: (origin: string, why: string) => `cannot reach the workspace ${origin} (${why})`,
  timeout: (seconds: number) =>
    `the workspace did not answer within ${seconds} s (the Apps proxy cuts a request at 120 s): for Genie and SQL, ask and then poll`,
  tooLarge: (bytes: number) => `the request body is larger than ${bytes} bytes`,
} as const;

/** A JSON-RPC result that carries `text` as a tool's error, so the agent reads it (MCP `isError`). */
export function toolErrorResult(id: unknown, text: string): string {
  return JSON.stringify({
    jsonrpc: "2.0",
    id: id ?? null,
    result: { content: [{ type: "text", text }], isError: true },
  });
}
