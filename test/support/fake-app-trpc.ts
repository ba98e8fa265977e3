import { writeFileSync } from "node:fs";
import path from "node:path";

/**
 * MetaMCP's tRPC for MCP servers, as the fake tree's backend serves it (dist/trpc.mjs), shaped as v2.4.22 has it:
 * - mounted at `/trpc/frontend` (routers/trpc.ts), procedures `frontend.mcpServers.<name>`, httpBatchLink's
 *   `?batch=1` with `{"0": input}` (tRPC v11, no transformer): answers `[{"result":{"data":…}}]` or
 *   `[{"error":{"message","code","data":{"code","httpStatus","path"}}}]` with the error's HTTP status;
 * - the context reads the session from better-auth's get-session with the request's cookie only (trpc.ts
 *   createContext); `protectedProcedure` answers UNAUTHORIZED "You must be logged in to access this resource";
 * - `create` (CreateMcpServerRequestSchema's name rule, a URL for non-STDIO types) owns the server by
 *   `input.user_id` when given (null = public), else the caller (mcp-servers.impl.ts), unique per
 *   (name, user_id) as `mcp_servers_name_user_unique_idx`; failures answer `{success:false, message}`;
 * - `list` answers the caller's own and the public servers (findAllAccessibleToUser), newest first.
 * Servers live in memory: the fake's tables stay upstream's few (FAKE_TREE_TABLES).
 */
const TRPC_MODULE = `
import { randomUUID } from "node:crypto";
import { auth } from "./auth.mjs";

const servers = [];
const CODES = { UNAUTHORIZED: [-32001, 401], FORBIDDEN: [-32003, 403], BAD_REQUEST: [-32600, 400], NOT_FOUND: [-32004, 404] };

async function contextUser(req) {
  if (!req.headers.cookie) return undefined;
  const headers = new Headers();
  headers.set("cookie", req.headers.cookie);
  const r = await auth.handler(new Request("http://" + req.headers.host + "/api/auth/get-session", { method: "GET", headers }));
  if (!r.ok) return undefined;
  const data = await r.json();
  return data && data.user && data.session ? data.user : undefined;
}

class TrpcError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

function createServer(input, userId) {
  if (!input || typeof input.name !== "string" || !/^[a-zA-Z0-9_-]+$/.test(input.name) || /_{2,}/.test(input.name))
    throw new TrpcError("BAD_REQUEST", JSON.stringify([{ code: "invalid_string", message: "Server name must only contain letters, numbers, underscores, and hyphens", path: ["name"] }]));
  const type = input.type ?? "STDIO";
  let ok = true;
  if (type !== "STDIO") { try { new URL(input.url); } catch { ok = false; } }
  if (!ok) throw new TrpcError("BAD_REQUEST", JSON.stringify([{ code: "custom", message: "Command is required for stdio servers. URL is required and must be valid for sse and streamable_http server types", path: [] }]));
  const owner = input.user_id !== undefined ? input.user_id : userId;
  if (servers.some((s) => s.name === input.name && s.user_id === owner))
    return { success: false, message: 'duplicate key value violates unique constraint "mcp_servers_name_user_unique_idx"' };
  const row = {
    uuid: randomUUID(), name: input.name, description: input.description ?? null, type,
    command: input.command ?? null, args: input.args ?? [], env: input.env ?? {}, url: input.url ?? null,
    error_status: "NONE", created_at: new Date().toISOString(), bearerToken: input.bearerToken ?? null,
    headers: input.headers ?? {}, user_id: owner,
  };
  servers.unshift(row);
  return { success: true, data: row, message: "MCP server created successfully" };
}

const PROCEDURES = {
  "frontend.mcpServers.create": { kind: "mutation", run: (input, user) => createServer(input, user.id) },
  "frontend.mcpServers.list": {
    kind: "query",
    run: (_input, user) => ({ success: true, data: servers.filter((s) => s.user_id === null || s.user_id === user.id), message: "MCP servers retrieved successfully" }),
  },
};

async function readJson(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString("utf8");
  return raw ? JSON.parse(raw) : {};
}

export async function handleTrpc(req, res, url) {
  const name = decodeURIComponent(url.pathname.slice("/trpc/frontend/".length));
  const answer = (status, items) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(items));
  };
  const proc = PROCEDURES[name];
  if (!proc) return answer(404, [{ error: { message: 'No procedure found on path "' + name + '"', code: -32004, data: { code: "NOT_FOUND", httpStatus: 404, path: name } } }]);
  const batch = proc.kind === "query" ? JSON.parse(url.searchParams.get("input") || "{}") : await readJson(req);
  try {
    const user = await contextUser(req);
    if (!user) throw new TrpcError("UNAUTHORIZED", "You must be logged in to access this resource");
    answer(200, [{ result: { data: await proc.run(batch["0"], user) } }]);
  } catch (err) {
    const code = err instanceof TrpcError ? err.code : "INTERNAL_SERVER_ERROR";
    const [rpc, status] = CODES[code] ?? [-32603, 500];
    answer(status, [{ error: { message: err.message, code: rpc, data: { code, httpStatus: status, path: name } } }]);
  }
}
`;

export function writeTrpcFiles(backendDir: string): void {
  writeFileSync(path.join(backendDir, "dist/trpc.mjs"), TRPC_MODULE);
}
