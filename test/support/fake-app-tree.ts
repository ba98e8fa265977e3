import { randomInt } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import getPort, { portNumbers } from "get-port";
import ts from "typescript";
import { BACKEND_INDEX_FILE, patchBackendListenText } from "../../src/patches/backend-loopback.js";
import { TOOLS_MODULE_FILE } from "../../src/patches/databricks-tools.js";
import { PROJECT_ROOT } from "./cli.js";
import { identityFrontend, writeAuthFiles } from "./fake-app-auth.js";
import { writeEndpointIdentityFiles } from "./fake-app-endpoints.js";
import { writeTrpcFiles } from "./fake-app-trpc.js";

/**
 * A built MetaMCP-shaped app tree (what `build` assembles), small enough to start in a second:
 * - runtime/start.mjs: OUR real runtime bundle (dist/runtime/start.mjs, built by `pretest`), and beside it
 *   runtime/secrets-preload.mjs (the preload MetaMCP's processes get their secrets through) and
 *   runtime/telemetry.mjs (the OpenTelemetry SDK, loaded when METAMCP_TELEMETRY is on);
 * - metamcp/apps/backend/dist/index.js: a tiny server that listens where OUR backend-loopback patch makes
 *   it listen (upstream's `listen(<port>, <callback>)` run through the patch), with upstream's pool shape AS
 *   PATCHED by db-pool-credentials (password read per connection from METAMCP_PG_PASSWORD_FILE), answering
 *   /health, /metamcp/health, /metamcp/notes (write/read a row), /metamcp/fresh (a NEW login per call),
 *   /metamcp/slow, /metamcp/sse (an event stream), /metamcp/exit0 (exits cleanly: must not pass for success),
 *   /metamcp/pid, /metamcp/tools-gateway (the tools gateway's handed-over secret, for the environ check), and a
 *   REAL MCP server (the SDK's) at /metamcp/<endpoint>/mcp (streamable HTTP) and
 *   /metamcp/<endpoint>/sse + /message, guarded exactly as upstream's api-key-oauth middleware guards them
 *   (see FAKE_ENDPOINTS and FAKE_METAMCP_API_KEY);
 * - metamcp/apps/backend/dist/databricks-tools.mjs: OUR fetch wrapper (overlay/), imported first as the
 *   databricks-tools patch makes index.ts; the `open` endpoint's `workspace_call` tool calls another MCP server
 *   as MetaMCP's client does (`new StreamableHTTPClientTransport(new URL(url))`), through it;
 * - metamcp/apps/backend/drizzle: one migration + drizzle's journal, unqualified (search_path decides);
 * - metamcp/apps/backend/dist/trpc.mjs: MetaMCP's tRPC for MCP servers (create, list), as fake-app-trpc.ts says;
 * - metamcp/apps/backend/dist/auth.mjs + databricks-identity.mjs: real better-auth with OUR injected module,
 *   mounted at /api/auth as upstream does (fake-app-auth.ts);
 * - metamcp/apps/frontend/server.js: redirects and checks the session as MetaMCP on Next standalone does
 *   (fake-app-auth.ts identityFrontend), else a page. Both are shaped like a real tree after our patches: the
 *   backend listens on METAMCP_BACKEND_PORT, else upstream's fixed 12009 (backend-loopback), and the frontend
 *   asks the backend there too (frontend-backend-port; FakeAppTreeOptions.backendPort is its fallback in
 *   place of 12009); the frontend listens on PORT, as Next's standalone server does.
 * `pg`, drizzle-orm (the runtime's migrator), the MCP SDK and zod resolve through a node_modules link to this
 * project's (the real tree ships the backend's own in metamcp/apps/backend/node_modules).
 */

/**
 * The MetaMCP API key the fake backend accepts, shaped as upstream makes them (`sk_mt_` + nanoid(),
 * api-keys.repo.ts `generateApiKey`). Tests use it as a person would use a key made in the UI.
 */
export const FAKE_METAMCP_API_KEY = "sk_mt_TestKey_fake-app-tree";

/**
 * The fake backend's endpoints, with upstream's endpoint flags (endpoints table):
 * - `demo`: API-key auth on, OAuth off (upstream's default for a new endpoint);
 * - `demo-qp`: API-key auth on and `use_query_param_auth` (so `?api_key=` counts);
 * - `open`: no auth at all.
 * An unknown name answers upstream's lookupEndpoint 404. They are rows of the fake's `endpoints` table
 * (fake-app-endpoints.ts FAKE_ENDPOINT_ROWS, which also gives their uuids); tests may add more there.
 */
export const FAKE_ENDPOINTS = {
  demo: { enable_api_key_auth: true, enable_oauth: false, use_query_param_auth: false },
  "demo-qp": { enable_api_key_auth: true, enable_oauth: false, use_query_param_auth: true },
  open: { enable_api_key_auth: false, enable_oauth: false, use_query_param_auth: false },
} as const;

const BACKEND = String.raw`
// As the databricks-tools patch makes index.ts: our module first (after the test's capture of the secret).
import "./capture-gateway-secret.mjs";
import { databricksToolsContext } from "./databricks-tools.mjs";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import pg from "pg";
import { z } from "zod";
import { handleAuth } from "./auth.mjs";
// MetaMCP's tRPC for MCP servers (fake-app-trpc.ts).
import { handleTrpc } from "./trpc.mjs";
// OUR module as the endpoint-identity patch writes it (fake-app-endpoints.ts).
import { acceptDatabricksIdentity, databricksEndpointIdentitySettings } from "./databricks-endpoint-identity.mjs";

const API_KEYS = new Set([${JSON.stringify(FAKE_METAMCP_API_KEY)}]);

const passwordFromFile = () => readFileSync(process.env.METAMCP_PG_PASSWORD_FILE, "utf8").trim();
const pool = new pg.Pool({
  ...(process.env.METAMCP_PG_PASSWORD_FILE ? { password: passwordFromFile } : { connectionString: process.env.DATABASE_URL }),
  idleTimeoutMillis: 200,
});
pool.on("error", () => {});
const now = () => new Date().toISOString();

// --- upstream's api-key-oauth.middleware, for endpoints with OAuth off ---
function extractAuthToken(req, url, endpoint) {
  const apiKeyHeader = req.headers["x-api-key"];
  if (apiKeyHeader) return { token: apiKeyHeader, source: "x-api-key" };
  const authHeader = req.headers.authorization;
  if (authHeader && authHeader.startsWith("Bearer ")) return { token: authHeader.substring(7), source: "authorization" };
  if (endpoint.enable_api_key_auth && endpoint.use_query_param_auth) {
    const q = url.searchParams.get("api_key") || url.searchParams.get("apikey");
    if (q) return { token: q, source: "query" };
  }
  return { source: "none" };
}
// upstream's AuthRateLimiter(20, 60 s), keyed by ip:endpoint (express req.ip = the socket's peer, no trust proxy)
const attempts = new Map();
function touch(id, bump) {
  const t = Date.now();
  const r = attempts.get(id);
  if (!r || t > r.resetTime) { attempts.set(id, { count: 1, resetTime: t + 60000 }); return false; }
  if (!bump && r.count >= 20) return true;
  r.count++;
  return false;
}
/** Returns the auth result, or undefined after answering as upstream does. */
function authenticate(req, res, url, name, endpoint, send) {
  const { token, source } = extractAuthToken(req, url, endpoint);
  if (!endpoint.enable_api_key_auth && !endpoint.enable_oauth) return { method: "none", source };
  if (!token) {
    send(401, { error: "authentication_required", error_description: "Authentication required via API key",
      supported_methods: ["X-API-Key header", "query parameter (api_key or apikey)"], timestamp: now() });
    return undefined;
  }
  if (API_KEYS.has(token)) {
    // upstream's checkApiKeyAccess: the fake's key is a public key (user_id null).
    if (endpoint.user_id !== null) {
      send(403, { error: "Access denied", message: "Public API keys cannot access private endpoints. Use a private API key owned by the endpoint owner.", timestamp: now() });
      return undefined;
    }
    return { method: "api_key", source };
  }
  const id = (req.socket.remoteAddress || "unknown") + ":" + name;
  touch(id, true);
  if (touch(id, false)) {
    send(429, { error: "too_many_requests", error_description: "Too many failed authentication attempts. Please try again later.", timestamp: now() });
    return undefined;
  }
  send(401, { error: "invalid_api_key", error_description: "The provided API key is invalid or expired", timestamp: now() });
  return undefined;
}

// MetaMCP's own tool-call limits come from its config table (MCP_TIMEOUT, MCP_MAX_TOTAL_TIMEOUT; 60 s when unset).
async function toolTimeoutMs() {
  try {
    const r = await pool.query("SELECT id, value FROM config WHERE id IN ('MCP_TIMEOUT', 'MCP_MAX_TOTAL_TIMEOUT')");
    const v = Object.fromEntries(r.rows.map((x) => [x.id, parseInt(x.value, 10)]));
    return Math.min(v.MCP_TIMEOUT || 60000, v.MCP_MAX_TOTAL_TIMEOUT || 60000);
  } catch {
    return 60000;
  }
}

const SEEN = ["host", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-email", "x-forwarded-user",
  "x-forwarded-preferred-username", "x-real-ip", "x-request-id", "x-forwarded-access-token"];
function newMcpServer(authInfo = {}, endpoint = "") {
  const s = new McpServer({ name: "fake-metamcp", version: "0.0.0" });
  s.registerTool("echo", { description: "Answers with the text it got", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text }] }));
  s.registerTool("sleep", { description: "Waits ms milliseconds, then answers", inputSchema: { ms: z.number().int().min(0) } },
    async ({ ms }, extra) => {
      const limit = await toolTimeoutMs();
      await new Promise((resolve, reject) => {
        const t = setTimeout(resolve, Math.min(ms, limit));
        extra.signal.addEventListener("abort", () => { clearTimeout(t); reject(new Error("cancelled")); }, { once: true });
      });
      // As MetaMCP answers when its own client gives up on the upstream server.
      if (ms > limit) return { isError: true, content: [{ type: "text", text: "MCP error -32001: Request timed out" }] };
      return { content: [{ type: "text", text: "slept " + ms + " ms" }] };
    });
  // As MetaMCP calls a server in a namespace: its own SDK client, new StreamableHTTPClientTransport(new URL(url)).
  // On the \`open\` endpoint only, so the other endpoints keep their three tools.
  if (endpoint === "open") s.registerTool("workspace_call", { description: "Calls a tool of the MCP server at url", inputSchema: { url: z.string(), tool: z.string(), args: z.record(z.unknown()).optional() } },
    async ({ url, tool, args }) => {
      const client = new Client({ name: "fake-metamcp-upstream", version: "0.0.0" });
      try {
        await client.connect(new StreamableHTTPClientTransport(new URL(url)));
        return await client.callTool({ name: tool, arguments: args ?? {} });
      } catch (err) {
        return { isError: true, content: [{ type: "text", text: "upstream failed: " + String(err?.message ?? err) }] };
      } finally {
        await client.close().catch(() => {});
      }
    });
  s.registerTool("whoami", { description: "The request headers the app saw, and how the request authenticated" },
    async (extra) => {
      const h = (extra.requestInfo && extra.requestInfo.headers) || {};
      const seen = {};
      for (const k of SEEN) if (h[k] !== undefined) seen[k] = k === "x-forwarded-access-token" ? "(present)" : h[k];
      const auth = h.authorization;
      seen.authorization = !auth ? "absent" : API_KEYS.has(String(auth).replace(/^Bearer /, "")) ? "metamcp-key" : "other";
      seen["x-api-key"] = h["x-api-key"] ? (API_KEYS.has(h["x-api-key"]) ? "metamcp-key" : "other") : "absent";
      seen.toolTimeoutMs = await toolTimeoutMs();
      // How the request that opened this session authenticated (upstream's request fields).
      seen.authMethod = authInfo.authMethod ?? "none";
      seen.apiKeyUserId = authInfo.apiKeyUserId ?? null;
      seen.databricksIdentity = authInfo.databricksIdentity ?? null;
      return { content: [{ type: "text", text: JSON.stringify(seen) }] };
    });
  return s;
}

const httpSessions = new Map();
const sseSessions = new Map();
async function handleMcp(req, res, url, name, kind, send) {
  // upstream's lookupEndpoint: the endpoint row by name.
  const found = await pool.query("SELECT uuid, name, user_id, enable_api_key_auth, enable_oauth, use_query_param_auth FROM endpoints WHERE name = $1", [name]);
  const endpoint = found.rows[0];
  if (!endpoint) return send(404, { error: "Endpoint not found", message: "No endpoint found with name: " + name, timestamp: now() });
  req.endpoint = endpoint;
  // authenticateApiKey as patched: our check first, then upstream's unchanged.
  let passed = false;
  if (await acceptDatabricksIdentity(req, res, () => { passed = true; })) {
    if (!passed) return;
  } else {
    const result = authenticate(req, res, url, name, endpoint, send);
    if (!result) return;
    if (result.method === "api_key") req.authMethod = "api_key";
  }
  const authInfo = { authMethod: req.authMethod, apiKeyUserId: req.apiKeyUserId, databricksIdentity: req.databricksIdentity };
  const sid = req.headers["mcp-session-id"];
  if (kind === "mcp" && req.method === "POST" && !sid) {
    const id = randomUUID();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: () => id });
    httpSessions.set(id, transport);
    transport.onclose = () => httpSessions.delete(id);
    await newMcpServer(authInfo, name).connect(transport);
    return transport.handleRequest(req, res);
  }
  if (kind === "mcp" && ["GET", "POST", "DELETE"].includes(req.method)) {
    const transport = httpSessions.get(sid);
    if (!transport) {
      if (req.method === "GET") { res.writeHead(404); return res.end("Session not found"); }
      // upstream (streamable-http.ts, v2.4.22 and main) lists every live id in this answer
      return send(404, { error: "Session not found", message: "Transport not found for sessionId " + sid, available_sessions: [...httpSessions.keys()], timestamp: now() });
    }
    return transport.handleRequest(req, res);
  }
  if (kind === "sse" && req.method === "GET") {
    const transport = new SSEServerTransport("/metamcp/" + name + "/message", res);
    sseSessions.set(transport.sessionId, transport);
    transport.onclose = () => sseSessions.delete(transport.sessionId);
    return newMcpServer(authInfo, name).connect(transport);
  }
  if (kind === "message" && req.method === "POST") {
    const transport = sseSessions.get(url.searchParams.get("sessionId"));
    if (!transport) return send(404, { error: "Session not found", timestamp: now() });
    return transport.handlePostMessage(req, res);
  }
  send(404, { error: "not found" });
}

// As the databricks-tools patch mounts it: first on the app, each request's per-person handle in its context.
const server = createServer((req, res) => databricksToolsContext(req, res, () => void serve(req, res)));
async function serve(req, res) {
  const url = new URL(req.url, "http://x");
  const send = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  try {
    if (url.pathname.startsWith("/api/auth")) return await handleAuth(req, res);
    if (url.pathname.startsWith("/trpc/frontend/")) return await handleTrpc(req, res, url);
    // index.ts as patched: app.use("/metamcp/_databricks/endpoint-identity", ...) (Express strips the mount path).
    const SETTINGS = "/metamcp/_databricks/endpoint-identity";
    if (url.pathname === SETTINGS || url.pathname.startsWith(SETTINGS + "/")) {
      req.url = req.url.slice(SETTINGS.length) || "/";
      return await databricksEndpointIdentitySettings(req, res);
    }
    const mcp = /^\/metamcp\/([^/]+)\/(mcp|sse|message)$/.exec(url.pathname);
    if (mcp) return await handleMcp(req, res, url, decodeURIComponent(mcp[1]), mcp[2], send);
    if (url.pathname === "/health" || url.pathname === "/metamcp/health") return send(200, { status: "ok" });
    // upstream's GET /metamcp/health/sessions: every live session id, no auth (streamable-http.ts)
    if (url.pathname.toLowerCase() === "/metamcp/health/sessions")
      return send(200, { streamableHttpSessions: { count: httpSessions.size, sessionIds: [...httpSessions.keys()] } });
    if (url.pathname === "/metamcp/pid") return send(200, { pid: process.pid });
    // For the environ check only: the gateway secret the runtime handed over, and whether env still has it.
    if (url.pathname === "/metamcp/tools-gateway")
      return send(200, { port: process.env.METAMCP_TOOLS_GATEWAY_PORT ?? null, secret: globalThis.__gatewaySecret ?? null,
        inEnv: "METAMCP_TOOLS_GATEWAY_SECRET" in process.env });
    if (url.pathname === "/metamcp/headers") return send(200, req.headers);
    if (url.pathname === "/metamcp/notes" && req.method === "POST") {
      const r = await pool.query("INSERT INTO notes (body) VALUES ($1) RETURNING id", [url.searchParams.get("body") ?? ""]);
      return send(200, { id: r.rows[0].id });
    }
    if (url.pathname === "/metamcp/notes") {
      const r = await pool.query("SELECT body, current_schema() AS schema FROM notes ORDER BY id");
      return send(200, { bodies: r.rows.map((x) => x.body), schema: r.rows[0]?.schema ?? null });
    }
    if (url.pathname === "/metamcp/fresh") {
      const c = new pg.Client({ password: passwordFromFile });
      await c.connect();
      const r = await c.query("SELECT current_schema() AS schema");
      await c.end();
      return send(200, r.rows[0]);
    }
    if (url.pathname === "/metamcp/slow") {
      await new Promise((r) => setTimeout(r, Number(url.searchParams.get("ms") ?? 1000)));
      return send(200, { slow: true });
    }
    if (url.pathname === "/metamcp/sse") {
      // An SSE stream like MCP's: one event per tick, each stamped with the server's clock.
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const n = Number(url.searchParams.get("n") ?? 5);
      for (let i = 0; i < n; i++) {
        res.write("data: " + JSON.stringify({ i, t: Date.now() }) + "\n\n");
        await new Promise((r) => setTimeout(r, Number(url.searchParams.get("gap") ?? 5)));
      }
      return res.end();
    }
    if (url.pathname === "/metamcp/exit0") {
      send(200, { exiting: true });
      setTimeout(() => process.exit(0), 50);
      return;
    }
    send(404, { error: "not found" });
  } catch (err) {
    if (!res.headersSent) send(500, { error: String(err.message ?? err) });
    else res.destroy();
  }
}
// Upstream's shape (its fixed port, no host: every interface); createFakeAppTree runs our backend-loopback
// patch on it, which makes the port METAMCP_BACKEND_PORT's when that is set, as on a real tree.
server.listen(12009, async () => console.log("backend listening on " + server.address().port));
process.on("SIGTERM", () => {
  for (const t of [...httpSessions.values(), ...sseSessions.values()]) t.close().catch(() => {});
  server.closeAllConnections();
  server.close(() => pool.end().then(() => process.exit(0)));
});
`;

const MIGRATION = `CREATE TABLE "notes" (
\t"id" serial PRIMARY KEY NOT NULL,
\t"body" text NOT NULL
);
`;

/** Upstream's app-wide settings table (schema.ts `configTable`), where MetaMCP keeps its MCP timeouts. */
const CONFIG_MIGRATION = `CREATE TABLE "config" (
\t"id" text PRIMARY KEY NOT NULL,
\t"value" text NOT NULL,
\t"description" text,
\t"created_at" timestamp with time zone DEFAULT now() NOT NULL,
\t"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
`;

/**
 * The tables a started fake tree has in the custom schema, sorted: drizzle's journal, the fake's upstream
 * tables (notes, config, better-auth's four, endpoints) and the runtime's own databricks_endpoint_identity,
 * databricks_mcp_sessions (session continuity) and databricks_tool_calls (the audit, on by default).
 */
export const FAKE_TREE_TABLES = [
  "__drizzle_migrations",
  "accounts",
  "config",
  "databricks_endpoint_identity",
  "databricks_mcp_sessions",
  "databricks_tool_calls",
  "endpoints",
  "notes",
  "sessions",
  "users",
  "verifications",
];

export interface FakeAppTreeOptions {
  /**
   * Leave drizzle-orm out of the tree's node_modules (the runtime migrates with the backend's own
   * drizzle-orm, as a real tree ships it): a tree built wrong.
   */
  withoutDrizzle?: boolean;
  /**
   * Where the frontend reaches the backend when METAMCP_BACKEND_PORT is not set (default upstream's 12009;
   * the runtime always sets it). Start the runtime with METAMCP_BACKEND_PORT set to the same (freeInternalPorts).
   */
  backendPort?: number;
}

/** Two free ports for a tree's backend and frontend, and the runtime variables that select them. */
export type InternalPorts = Awaited<ReturnType<typeof freeInternalPorts>>;

/**
 * A free port below Linux's ephemeral range (32768-60999), from a random start: a test holds these for a whole
 * file, as upstream's fixed 12008/12009 are held, and between its stacks any `listen(0)` on the machine (a
 * runtime's tools gateway, another test's server) could otherwise be handed the same port (seen: EADDRINUSE).
 */
async function freeFixedPort(): Promise<number> {
  const start = 20_000 + randomInt(12_000);
  return await getPort({ host: "127.0.0.1", port: portNumbers(start, start + 500) });
}

export async function freeInternalPorts(): Promise<{
  backendPort: number;
  frontendPort: number;
  env: { METAMCP_BACKEND_PORT: string; METAMCP_FRONTEND_PORT: string };
}> {
  const backendPort = await freeFixedPort();
  let frontendPort = await freeFixedPort();
  while (frontendPort === backendPort) frontendPort = await freeFixedPort();
  return {
    backendPort,
    frontendPort,
    env: { METAMCP_BACKEND_PORT: String(backendPort), METAMCP_FRONTEND_PORT: String(frontendPort) },
  };
}

/** Our fetch wrapper as the built backend carries it (transpiled), and the test's capture of its secret. */
function writeToolsFiles(backendDir: string): void {
  const source = readFileSync(path.join(PROJECT_ROOT, "overlay", TOOLS_MODULE_FILE), "utf8");
  writeFileSync(
    path.join(backendDir, "dist/databricks-tools.mjs"),
    ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText,
  );
  writeFileSync(
    path.join(backendDir, "dist/capture-gateway-secret.mjs"),
    "globalThis.__gatewaySecret = process.env.METAMCP_TOOLS_GATEWAY_SECRET;\n",
  );
}

export function createFakeAppTree(dir: string, options: FakeAppTreeOptions = {}): string {
  const be = path.join(dir, "metamcp/apps/backend");
  const fe = path.join(dir, "metamcp/apps/frontend");
  mkdirSync(path.join(dir, "runtime"), { recursive: true });
  mkdirSync(path.join(be, "dist"), { recursive: true });
  mkdirSync(path.join(be, "drizzle/meta"), { recursive: true });
  mkdirSync(fe, { recursive: true });
  copyFileSync(path.join(PROJECT_ROOT, "dist/runtime/start.mjs"), path.join(dir, "runtime/start.mjs"));
  copyFileSync(
    path.join(PROJECT_ROOT, "dist/runtime/secrets-preload.mjs"),
    path.join(dir, "runtime/secrets-preload.mjs"),
  );
  copyFileSync(
    path.join(PROJECT_ROOT, "dist/runtime/telemetry.mjs"),
    path.join(dir, "runtime/telemetry.mjs"),
  );
  writeFileSync(path.join(dir, "metamcp/package.json"), '{"type":"module"}\n');
  const backend = patchBackendListenText(BACKEND_INDEX_FILE, BACKEND, {
    schema: "metamcp_app",
    upstreamRef: "fake",
  });
  writeFileSync(path.join(be, "dist/index.js"), backend.text);
  writeTrpcFiles(be);
  writeAuthFiles(be);
  writeEndpointIdentityFiles(be);
  writeToolsFiles(be);
  writeFileSync(path.join(fe, "server.js"), identityFrontend(options.backendPort));
  writeFileSync(path.join(be, "drizzle/0000_notes.sql"), MIGRATION);
  writeFileSync(path.join(be, "drizzle/0001_config.sql"), CONFIG_MIGRATION);
  writeFileSync(
    path.join(be, "drizzle/meta/_journal.json"),
    `${JSON.stringify(
      {
        version: "7",
        dialect: "postgresql",
        entries: [
          { idx: 0, version: "7", when: 1750000000000, tag: "0000_notes", breakpoints: true },
          { idx: 1, version: "7", when: 1750000001000, tag: "0001_config", breakpoints: true },
          { idx: 2, version: "7", when: 1750000002000, tag: "0002_auth", breakpoints: true },
          { idx: 3, version: "7", when: 1750000003000, tag: "0003_endpoints", breakpoints: true },
        ],
      },
      null,
      2,
    )}\n`,
  );
  // What the real tree's backend/node_modules holds (pg, drizzle-orm, …) resolves from here, as Node looks
  // upward from apps/backend: the runtime loads drizzle-orm's migrator that way (src/runtime/database.ts).
  const projectModules = path.join(PROJECT_ROOT, "node_modules");
  const treeModules = path.join(dir, "metamcp/node_modules");
  if (!options.withoutDrizzle) symlinkSync(projectModules, treeModules);
  else {
    mkdirSync(treeModules);
    for (const name of readdirSync(projectModules))
      if (name !== "drizzle-orm" && name !== ".bin")
        symlinkSync(path.join(projectModules, name), path.join(treeModules, name));
  }
  return dir;
}
