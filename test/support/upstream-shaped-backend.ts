import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { createRouter } from "../../src/runtime/router.js";

/**
 * A backend that behaves as upstream MetaMCP's public endpoints do (routers/public-metamcp/streamable-http.ts
 * and sse.ts, v2.4.22 and main): ONE process-wide map per transport, sessions looked up by id alone whatever
 * the endpoint or caller, `GET /metamcp/health/sessions` listing every id, a 404 carrying
 * `available_sessions`, a DELETE answered with `remainingSessions`, Express's case-insensitive routes. Two
 * people (Ada, Bob), each with their own private endpoint and key; `kill()` and `start()` play a restart of
 * MetaMCP's process (every session gone, the same port). The router in front is the app's, played from
 * 127.0.0.1 as the Apps proxy.
 */
export const ADA = { email: "ada@example.com", endpoint: "adas", key: "sk_mt_ada_0123456789abcdefghij" };
export const BOB = { email: "bob@example.com", endpoint: "bobs", key: "sk_mt_bob_0123456789abcdefghij" };
export const KEYS: Record<string, string> = { [ADA.endpoint]: ADA.key, [BOB.endpoint]: BOB.key };
export const SECRET = "f".repeat(64);

export interface UpstreamShape {
  server: Server;
  port: number;
  /** Sessions opened (initialize requests answered), since the start. */
  opened: number;
  /** A restart's first half: the process is gone, with every session and every open connection. */
  kill(): Promise<void>;
  /** Its second half: a new process on the same port, knowing no session. */
  start(): Promise<void>;
  /** Ends a `slow` tool call that is waiting (returns how many were). */
  releaseSlow(): number;
  /** `slow` calls waiting now. */
  readonly slowWaiting: number;
  http: Map<string, StreamableHTTPServerTransport>;
  sse: Map<string, SSEServerTransport>;
  deletes: string[];
  seen: IncomingMessage["headers"][];
}

function mcpServerFor(endpoint: string) {
  const s = new McpServer({ name: "upstream-shaped", version: "0.0.0" });
  // Whose session answered: the endpoint it was opened on.
  s.registerTool("owner", { description: "the endpoint this session was opened on" }, async () => ({
    content: [{ type: "text", text: endpoint }],
  }));
  // Waits until the test releases it (or the process is killed): a call in flight at a kill.
  s.registerTool("slow", { description: "answers when released" }, async () => {
    await new Promise<void>((r) => slowWaiters.add(r));
    return { content: [{ type: "text", text: "released" }] };
  });
  return s;
}

const slowWaiters = new Set<() => void>();

export async function startUpstreamShapedBackend(): Promise<UpstreamShape> {
  const http = new Map<string, StreamableHTTPServerTransport>();
  const sse = new Map<string, SSEServerTransport>();
  const deletes: string[] = [];
  const seen: IncomingMessage["headers"][] = [];
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
    res.end(JSON.stringify(body));
  };
  let opened = 0;
  const sockets = new Set<Socket>();
  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    seen.push({ ...req.headers });
    const url = new URL(req.url ?? "/", "http://x");
    if (/^\/metamcp\/health\/sessions\/?$/i.test(url.pathname))
      return json(res, 200, { streamableHttpSessions: { count: http.size, sessionIds: [...http.keys()] } });
    const m = /^\/metamcp\/([^/]+)\/(mcp|sse|message)\/?$/i.exec(url.pathname);
    if (!m) return json(res, 404, { error: "not found" });
    const endpoint = m[1]!;
    const kind = m[2]!.toLowerCase();
    const key = req.headers["x-api-key"] ?? url.searchParams.get("api_key");
    if (!KEYS[endpoint] || KEYS[endpoint] !== key) return json(res, 401, { error: "invalid_api_key" });
    const sid = req.headers["mcp-session-id"] as string | undefined;
    if (kind === "mcp" && req.method === "POST" && !sid) {
      const id = randomUUID();
      const t = new StreamableHTTPServerTransport({ sessionIdGenerator: () => id });
      http.set(id, t);
      opened++;
      await mcpServerFor(endpoint).connect(t);
      return await t.handleRequest(req, res);
    }
    if (kind === "mcp") {
      const t = sid ? http.get(sid) : undefined;
      if (!t)
        return json(res, 404, {
          error: "Session not found",
          message: `Transport not found for sessionId ${sid}`,
          available_sessions: [...http.keys()],
          timestamp: new Date().toISOString(),
        });
      if (req.method === "DELETE") {
        deletes.push(sid!);
        await t.close();
        http.delete(sid!);
        return json(res, 200, {
          message: "Session cleaned up successfully",
          sessionId: sid,
          remainingSessions: [...http.keys()],
        });
      }
      return await t.handleRequest(req, res);
    }
    if (kind === "sse" && req.method === "GET") {
      const t = new SSEServerTransport(`/metamcp/${endpoint}/message`, res);
      sse.set(t.sessionId, t);
      res.on("close", () => sse.delete(t.sessionId));
      return await mcpServerFor(endpoint).connect(t);
    }
    const t = sse.get(url.searchParams.get("sessionId") ?? "");
    if (!t) {
      res.writeHead(404);
      return res.end("Session not found");
    }
    return await t.handlePostMessage(req, res);
  };
  const listen = async (port: number) => {
    const server = createServer((req, res) => void handler(req, res));
    server.on("connection", (s) => {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
    });
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
    return server;
  };
  let server = await listen(0);
  const port = (server.address() as AddressInfo).port;
  return {
    get server() {
      return server;
    },
    port,
    get opened() {
      return opened;
    },
    http,
    sse,
    deletes,
    seen,
    kill: async () => {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      http.clear();
      sse.clear();
      await closed;
    },
    start: async () => {
      server = await listen(port);
    },
    releaseSlow: () => {
      const n = slowWaiters.size;
      for (const r of slowWaiters) r();
      slowWaiters.clear();
      return n;
    },
    get slowWaiting() {
      return slowWaiters.size;
    },
  };
}

export async function startRouter(
  backendPort: number,
  extra: Partial<Parameters<typeof createRouter>[0]> = {},
) {
  const router = createRouter({
    backendPort,
    frontendPort: 1, // nothing here goes to the frontend
    identitySecret: SECRET,
    trustedProxyAddresses: ["127.0.0.1"],
    ...extra,
  });
  router.ready = true;
  await new Promise<void>((r) => router.server.listen(0, "0.0.0.0", () => r()));
  return { router, url: `http://127.0.0.1:${(router.server.address() as AddressInfo).port}` };
}

/** A person's client headers as they reach the app port: the proxy's identity, and their MetaMCP key. */
export const as = (p: typeof ADA) => ({ "x-forwarded-email": p.email, "x-api-key": p.key });

export async function connect(url: string, p: typeof ADA) {
  const client = new Client({ name: `client-of-${p.email}`, version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/metamcp/${p.endpoint}/mcp`), {
    requestInit: { headers: as(p) },
  });
  await client.connect(transport);
  return { client, transport, sessionId: transport.sessionId! };
}

export const text = (r: unknown) => (r as { content: { text: string }[] }).content[0]!.text;

/** A raw tools/call naming a session, as an attacker sends it. */
export function callWith(url: string, path: string, sessionId: string, headers: Record<string, string>) {
  return fetch(`${url}${path}`, {
    method: "POST",
    headers: {
      ...headers,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-session-id": sessionId,
      "mcp-protocol-version": "2025-06-18",
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: { name: "owner", arguments: {} },
    }),
  });
}
