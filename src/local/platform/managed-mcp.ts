import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";
import { ApiError, type PlatformServer, type RouteContext, sendJson } from "./server.js";
import type { IssuedToken, TokenStore } from "./tokens.js";

/**
 * Databricks' managed MCP servers, as the stand-in workspace serves them under `/api/2.0/mcp/`
 * (docs/databricks-tools-design.md §1.1, §7; every shape and its source: test/databricks/fixtures/platform-cases.md
 * "Managed MCP servers"): real MCP SDK servers over streamable HTTP, one transport per session, behind the checks
 * a workspace makes, in this order:
 * 1. a valid workspace OAuth token, else 401;
 * 2. `all-apis` or the server kind's own scope, else 403 naming the scope;
 * 3. a Unity Catalog / Genie grant for the token's subject, else 403 naming the privilege;
 * 4. the workspace offers managed MCP servers at all (`local up --managed-mcp off` plays a workspace whose
 *    preview is off), else 404 FEATURE_DISABLED (an assumed shape).
 * An MCP session belongs to the subject that opened it: another subject's request on it is refused (403), the
 * strict reading of an open question (design Q5).
 */

/** The server kinds the stand-in serves and the OAuth scope each needs besides `all-apis` (design §1.1). */
export const MANAGED_MCP_SCOPES = { genie: "genie", sql: "sql", functions: "unity-catalog" } as const;
export type ManagedMcpKind = keyof typeof MANAGED_MCP_SCOPES;

/**
 * A privilege on a securable: `USE CATALOG` on `main`, `EXECUTE` on `main.tools.region_of`, `CAN VIEW` on a space.
 * `principal` is a user's email, a service principal's application id, or `account users` (every workspace user,
 * as Unity Catalog's group of that name; a service principal is not one).
 */
export interface Grant {
  principal: string;
  privilege: string;
  securable: string;
}

export interface UcFunction {
  catalog: string;
  schema: string;
  name: string;
  description: string;
  /** The function's one STRING parameter. */
  parameter: string;
  run(argument: string): string;
}

export interface GenieSpace {
  id: string;
  title: string;
  /** The space's table: rows a subject may see are filtered by `regionsFor`. */
  rows: { region: string; country: string; revenue: number }[];
}

/** The seeded workspace: space `local-sales`, function `main.tools.region_of` (design §7 "Seeds"). */
export const SEED_SPACE = "local-sales";
export const SEED_FUNCTION = "main.tools.region_of";
/** A function nobody was granted EXECUTE on: Unity Catalog's refusal, rehearsed through MetaMCP. */
export const UNGRANTED_FUNCTION = "main.finance.margin_of";

const REGIONS: Record<string, string> = {
  DE: "EMEA",
  FR: "EMEA",
  GB: "EMEA",
  US: "AMER",
  CA: "AMER",
  BR: "AMER",
  JP: "APJ",
  IN: "APJ",
};

export function seedFunctions(): UcFunction[] {
  return [
    {
      catalog: "main",
      schema: "tools",
      name: "region_of",
      description: "The sales region (EMEA, AMER, APJ) of an ISO country code",
      parameter: "country",
      run: (country) => REGIONS[country.trim().toUpperCase()] ?? "UNKNOWN",
    },
    {
      catalog: "main",
      schema: "finance",
      name: "margin_of",
      description: "The gross margin of a product line (nobody may EXECUTE it: a refusal to rehearse)",
      parameter: "product",
      run: () => "0.42",
    },
  ];
}

export function seedSpaces(): GenieSpace[] {
  return [
    {
      id: SEED_SPACE,
      title: "Local sales",
      rows: Object.entries(REGIONS).map(([country, region], i) => ({
        region,
        country,
        revenue: 1000 * (i + 1),
      })),
    },
  ];
}

/**
 * The grants a workspace admin makes for the app's service principal (design §1.2): CAN VIEW on the space;
 * USE CATALOG, USE SCHEMA and EXECUTE for the function. Other subjects start with none.
 */
/** Unity Catalog's group of every user in the account. */
export const ALL_USERS = "account users";

/**
 * The stand-in's seeded grants: the app's service principal may use both seeds; `manager` (the local default
 * user) too; every other user sees the space and the schema but was never granted EXECUTE on the function, so a
 * person's refusal can be rehearsed (design §7 "Seeds"). Nobody may EXECUTE main.finance.margin_of, so the app's
 * own refusal can be too.
 */
export function seedGrants(servicePrincipal: string, manager: string): Grant[] {
  return [
    ...servicePrincipalGrants(servicePrincipal),
    ...servicePrincipalGrants(manager),
    { principal: ALL_USERS, privilege: "CAN VIEW", securable: SEED_SPACE },
    { principal: ALL_USERS, privilege: "USE CATALOG", securable: "main" },
    { principal: ALL_USERS, privilege: "USE SCHEMA", securable: "main.tools" },
    // main.finance: its schema may be used, its function may not (UNGRANTED_FUNCTION).
    { principal: servicePrincipal, privilege: "USE SCHEMA", securable: "main.finance" },
    { principal: ALL_USERS, privilege: "USE SCHEMA", securable: "main.finance" },
  ];
}

export function servicePrincipalGrants(principal: string): Grant[] {
  return [
    { principal, privilege: "CAN VIEW", securable: SEED_SPACE },
    { principal, privilege: "USE CATALOG", securable: "main" },
    { principal, privilege: "USE SCHEMA", securable: "main.tools" },
    { principal, privilege: "EXECUTE", securable: SEED_FUNCTION },
  ];
}

export interface ManagedMcpOptions {
  tokens: Pick<TokenStore, "verifyHeader">;
  grants: Grant[];
  functions?: UcFunction[];
  spaces?: GenieSpace[];
  /** False plays a workspace that does not offer managed MCP servers (the preview off, another region). */
  offered: () => boolean;
  /** How long a Genie answer stays IN_PROGRESS before it is COMPLETED (Genie answers in seconds). */
  genieDelayMs: () => number;
  /** Which regions' rows a subject sees in Genie answers (row filters in Unity Catalog); default: all. */
  regionsFor?: (subject: string) => string[] | "all";
  now?: () => number;
  /** The most sessions kept open; the oldest is ended beyond it (default 1000). */
  maxSessions?: number;
}

export interface ManagedMcp {
  /** Open MCP sessions (tests look at who holds them). */
  sessions(): { id: string; subject: string; path: string }[];
  close(): Promise<void>;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  subject: string;
  path: string;
}

interface Target {
  kind: ManagedMcpKind;
  path: string;
  /** The grants this path needs, checked on every request. */
  needs: { privilege: string; securable: string }[];
  build(subject: string): McpServer;
}

/** Unity Catalog's words for a securable's type in its PERMISSION_DENIED messages. */
const SECURABLE_TYPE: Record<string, string> = {
  "USE CATALOG": "Catalog",
  "USE SCHEMA": "Schema",
  EXECUTE: "Routine or Model",
};

function deniedMessage(subject: string, privilege: string, securable: string): string {
  if (privilege === "CAN VIEW")
    return `User ${subject} does not have CAN VIEW permission on Genie space '${securable}'.`;
  return `User does not have ${privilege} on ${SECURABLE_TYPE[privilege] ?? "securable"} '${securable}'.`;
}

const text = (value: unknown) => ({ content: [{ type: "text" as const, text: JSON.stringify(value) }] });

/** The tool name of a UC function (`main__tools__region_of`; Databricks' own naming is unverified, design §7). */
export function functionToolName(f: Pick<UcFunction, "catalog" | "schema" | "name">): string {
  return `${f.catalog}__${f.schema}__${f.name}`;
}

export function registerManagedMcp(workspace: PlatformServer, options: ManagedMcpOptions): ManagedMcp {
  const now = options.now ?? Date.now;
  const functions = options.functions ?? seedFunctions();
  const spaces = options.spaces ?? seedSpaces();
  const sessions = new Map<string, Session>();
  const has = (subject: string, privilege: string, securable: string) =>
    options.grants.some(
      (g) =>
        (g.principal === subject || (g.principal === ALL_USERS && subject.includes("@"))) &&
        g.privilege === privilege &&
        g.securable === securable,
    );

  /** Genie's conversations: each belongs to the subject that asked, as a Genie conversation belongs to its user. */
  const conversations = new Map<
    string,
    { subject: string; space: GenieSpace; responses: Map<string, { question: string; askedAt: number }> }
  >();

  const genieServer = (space: GenieSpace, subject: string): McpServer => {
    const server = new McpServer({ name: `genie-${space.id}`, version: "0.0.0" });
    server.registerTool(
      "genie_ask",
      {
        description: `Ask Genie space "${space.title}" a question; answers ids to poll with genie_poll_response`,
        inputSchema: { question: z.string(), conversation_id: z.string().optional() },
      },
      async ({ question, conversation_id }) => {
        let conversationId = conversation_id;
        let conversation = conversationId ? conversations.get(conversationId) : undefined;
        if (conversationId && (!conversation || conversation.subject !== subject))
          return { ...text({ error: `conversation ${conversationId} not found` }), isError: true };
        if (!conversation) {
          conversationId = randomUUID();
          conversation = { subject, space, responses: new Map() };
          conversations.set(conversationId, conversation);
        }
        const responseId = randomUUID();
        conversation.responses.set(responseId, { question, askedAt: now() });
        return text({ conversation_id: conversationId, response_id: responseId, status: "IN_PROGRESS" });
      },
    );
    server.registerTool(
      "genie_poll_response",
      {
        description: "The state of a Genie answer: IN_PROGRESS, then COMPLETED with its rows",
        inputSchema: { conversation_id: z.string(), response_id: z.string() },
      },
      async ({ conversation_id, response_id }) => {
        const conversation = conversations.get(conversation_id);
        const response =
          conversation?.subject === subject ? conversation.responses.get(response_id) : undefined;
        if (!response)
          return {
            ...text({ error: `response ${response_id} not found in ${conversation_id}` }),
            isError: true,
          };
        if (now() - response.askedAt < options.genieDelayMs())
          return text({ conversation_id, response_id, status: "IN_PROGRESS" });
        const regions = options.regionsFor?.(subject) ?? "all";
        const rows = space.rows.filter((r) => regions === "all" || regions.includes(r.region));
        return text({
          conversation_id,
          response_id,
          status: "COMPLETED",
          text: `Revenue by country for "${response.question}" (${rows.length} rows)`,
          columns: ["region", "country", "revenue"],
          rows: rows.map((r) => [r.region, r.country, r.revenue]),
        });
      },
    );
    return server;
  };

  const functionsServer = (list: UcFunction[]): McpServer => {
    const server = new McpServer({ name: "unity-catalog-functions", version: "0.0.0" });
    for (const f of list)
      server.registerTool(
        functionToolName(f),
        { description: f.description, inputSchema: { [f.parameter]: z.string() } },
        async (args: Record<string, unknown>) => text({ result: f.run(String(args[f.parameter] ?? "")) }),
      );
    return server;
  };

  const sqlServer = (): McpServer => {
    const server = new McpServer({ name: "databricks-sql", version: "0.0.0" });
    // Per session, so a statement is only ever its own subject's (sessions are bound to their subject).
    const statements = new Map<string, { query: string }>();
    server.registerTool(
      "execute_sql_read_only",
      {
        description: "Run a read-only SQL statement; poll with poll_sql_result",
        inputSchema: { query: z.string() },
      },
      async ({ query }) => {
        const id = randomUUID();
        statements.set(id, { query });
        return text({ statement_id: id, status: { state: "PENDING" } });
      },
    );
    server.registerTool(
      "poll_sql_result",
      { description: "The state of a statement", inputSchema: { statement_id: z.string() } },
      async ({ statement_id }) => {
        const s = statements.get(statement_id);
        if (!s) return { ...text({ error: `statement ${statement_id} not found` }), isError: true };
        return text({ statement_id, status: { state: "SUCCEEDED" }, result: { data_array: [["1"]] } });
      },
    );
    return server;
  };

  const unknown = (what: string): never => {
    throw new ApiError(404, "RESOURCE_DOES_NOT_EXIST", what);
  };

  const targetOf = (params: Record<string, string>, kind: ManagedMcpKind, path: string): Target => {
    if (kind === "sql") return { kind, path, needs: [], build: () => sqlServer() };
    if (kind === "genie") {
      const space = spaces.find((s) => s.id === (params.space ?? SEED_SPACE));
      if (!space) return unknown(`Genie space ${params.space} does not exist.`);
      return {
        kind,
        path,
        needs: [{ privilege: "CAN VIEW", securable: space.id }],
        build: (subject) => genieServer(space, subject),
      };
    }
    const { catalog = "", schema = "", fn } = params;
    const inSchema = functions.filter((f) => f.catalog === catalog && f.schema === schema);
    if (inSchema.length === 0) return unknown(`Schema '${catalog}.${schema}' does not exist.`);
    const chosen = fn ? inSchema.filter((f) => f.name === fn) : inSchema;
    if (chosen.length === 0) return unknown(`Routine '${catalog}.${schema}.${fn}' does not exist.`);
    return {
      kind,
      path,
      needs: [
        { privilege: "USE CATALOG", securable: catalog },
        { privilege: "USE SCHEMA", securable: `${catalog}.${schema}` },
        ...(fn ? [{ privilege: "EXECUTE", securable: `${catalog}.${schema}.${fn}` }] : []),
      ],
      build: () => functionsServer(chosen),
    };
  };

  /** The EXECUTE a `tools/call` of a UC function needs (the schema-wide server lists them all). */
  const callNeeds = (target: Target, body: unknown): { privilege: string; securable: string } | undefined => {
    if (target.kind !== "functions") return undefined;
    const messages = Array.isArray(body) ? body : [body];
    for (const m of messages as { method?: string; params?: { name?: string } }[]) {
      if (m?.method !== "tools/call") continue;
      const f = functions.find((x) => functionToolName(x) === m.params?.name);
      if (f) return { privilege: "EXECUTE", securable: `${f.catalog}.${f.schema}.${f.name}` };
    }
    return undefined;
  };

  const authorize = (req: IncomingMessage, target: Target, body: unknown): IssuedToken => {
    const token = options.tokens.verifyHeader(req.headers.authorization);
    if (!token) throw new ApiError(401, "UNAUTHENTICATED", "Invalid access token.");
    const scope = MANAGED_MCP_SCOPES[target.kind];
    if (!token.scopes.includes("all-apis") && !token.scopes.includes(scope))
      throw new ApiError(
        403,
        "PERMISSION_DENIED",
        `Provided OAuth token does not have required scopes: ${scope}`,
      );
    const call = callNeeds(target, body);
    for (const need of [...target.needs, ...(call ? [call] : [])])
      if (!has(token.subject, need.privilege, need.securable))
        throw new ApiError(
          403,
          "PERMISSION_DENIED",
          deniedMessage(token.subject, need.privilege, need.securable),
        );
    if (!options.offered())
      throw new ApiError(
        404,
        "FEATURE_DISABLED",
        "Managed MCP servers are not enabled for this workspace (the Managed MCP Servers preview is off or not available in this region).",
      );
    return token;
  };

  /** Resolves once the answer is finished (or its connection gone): the route must not answer twice. */
  const settled = (res: ServerResponse) =>
    new Promise<void>((resolve) => {
      if (res.writableEnded || res.destroyed) resolve();
      else res.once("close", () => resolve());
    });

  const handle =
    (kind: ManagedMcpKind) =>
    async ({ req, res, params, body }: RouteContext): Promise<void> => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      const target = targetOf(params, kind, path);
      const token = authorize(req, target, body);
      const id = req.headers["mcp-session-id"];
      if (typeof id === "string") {
        const session = sessions.get(id);
        if (!session || session.path !== path) {
          sendJson(res, 404, {
            jsonrpc: "2.0",
            error: { code: -32001, message: "Session not found" },
            id: null,
          });
          return;
        }
        if (session.subject !== token.subject)
          throw new ApiError(403, "PERMISSION_DENIED", "This MCP session was opened by another principal.");
        await session.transport.handleRequest(req, res, body);
        await settled(res);
        return;
      }
      const server = target.build(token.subject);
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => {
          sessions.set(sid, { transport, server, subject: token.subject, path });
          // Clients that never end their sessions (most don't) must not grow a long `local` run without bound.
          for (const [old, s] of sessions) {
            if (sessions.size <= (options.maxSessions ?? 1000)) break;
            sessions.delete(old);
            void s.server.close().catch(() => {});
          }
        },
      });
      transport.onclose = () => {
        if (transport.sessionId) sessions.delete(transport.sessionId);
      };
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      await settled(res);
      // A request that opened no session (not an initialize) leaves nothing behind.
      if (!transport.sessionId) await server.close();
    };

  const routes: [string, ManagedMcpKind][] = [
    ["/api/2.0/mcp/genie", "genie"],
    ["/api/2.0/mcp/genie/:space", "genie"],
    ["/api/2.0/mcp/sql", "sql"],
    ["/api/2.0/mcp/functions/:catalog/:schema", "functions"],
    ["/api/2.0/mcp/functions/:catalog/:schema/:fn", "functions"],
  ];
  for (const [pattern, kind] of routes)
    for (const method of ["POST", "GET", "DELETE"]) workspace.route(method, pattern, handle(kind));

  return {
    sessions: () => [...sessions].map(([id, s]) => ({ id, subject: s.subject, path: s.path })),
    async close() {
      const open = [...sessions.values()];
      sessions.clear();
      await Promise.all(open.map((s) => s.server.close().catch(() => {})));
    },
  };
}
