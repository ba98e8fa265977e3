import { randomUUID } from "node:crypto";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { SSEServerTransport } from "@modelcontextprotocol/sdk/server/sse.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

/**
 * A backend shaped like MetaMCP's public endpoints (real MCP SDK servers, one map per transport, as in
 * session-guard.test.ts) and two people with their own endpoint and key, calling it with real SDK clients
 * (the tests play the Apps proxy from 127.0.0.1): the rig of the audit's and the telemetry's tests.
 */

export const ADA = { email: "ada@example.com", endpoint: "adas", key: "sk_mt_ada_0123456789abcdefghij" };
export const BOB = { email: "bob@example.com", endpoint: "bobs", key: "sk_mt_bob_0123456789abcdefghij" };
const KEYS: Record<string, string> = { [ADA.endpoint]: ADA.key, [BOB.endpoint]: BOB.key };

export interface Backend {
  server: Server;
  port: number;
  http: Map<string, StreamableHTTPServerTransport>;
  sse: Map<string, SSEServerTransport>;
  /** Calls of `tools__slow` that have started (their release function). */
  slow: (() => void)[];
}

function mcpServer() {
  const s = new McpServer({ name: "upstream-shaped", version: "0.0.0" });
  s.registerTool("tools__echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
    content: [{ type: "text", text }],
  }));
  s.registerTool("tools__fail", {}, async () => ({
    content: [{ type: "text", text: "the database said no" }],
    isError: true,
  }));
  return s;
}

export async function startBackend(): Promise<Backend> {
  const http = new Map<string, StreamableHTTPServerTransport>();
  const sse = new Map<string, SSEServerTransport>();
  const slow: (() => void)[] = [];
  const withSlow = () => {
    const s = mcpServer();
    s.registerTool("tools__slow", {}, async () => {
      await new Promise<void>((r) => slow.push(r));
      return { content: [{ type: "text", text: "late" }] };
    });
    return s;
  };
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
    res.end(JSON.stringify(body));
  };
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const m = /^\/metamcp\/([^/]+)\/(mcp|sse|message)\/?$/i.exec(url.pathname);
    if (!m) return json(res, 404, { error: "not found" });
    const endpoint = m[1]!;
    const kind = m[2]!.toLowerCase();
    if (!KEYS[endpoint] || KEYS[endpoint] !== req.headers["x-api-key"])
      return json(res, 401, { error: "invalid_api_key" });
    const sid = req.headers["mcp-session-id"] as string | undefined;
    if (kind === "mcp" && req.method === "POST" && !sid) {
      const id = randomUUID();
      // Bob's endpoint answers POSTs with JSON, Ada's with an SSE stream: both shapes of streamable HTTP.
      const t = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => id,
        enableJsonResponse: endpoint === BOB.endpoint,
      });
      http.set(id, t);
      await withSlow().connect(t);
      return await t.handleRequest(req, res);
    }
    if (kind === "mcp") {
      const t = sid ? http.get(sid) : undefined;
      if (!t) return json(res, 404, { error: "Session not found", available_sessions: [...http.keys()] });
      return await t.handleRequest(req, res);
    }
    if (kind === "sse" && req.method === "GET") {
      const t = new SSEServerTransport(`/metamcp/${endpoint}/message`, res);
      sse.set(t.sessionId, t);
      res.on("close", () => sse.delete(t.sessionId));
      return await withSlow().connect(t);
    }
    const t = sse.get(url.searchParams.get("sessionId") ?? "");
    if (!t) {
      res.writeHead(404);
      return res.end("Session not found");
    }
    return await t.handlePostMessage(req, res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { server, port: (server.address() as AddressInfo).port, http, sse, slow };
}

export const as = (p: typeof ADA) => ({ "x-forwarded-email": p.email, "x-api-key": p.key });

export async function streamable(url: string, p: typeof ADA, extraHeaders: Record<string, string> = {}) {
  const client = new Client({ name: `agent-of-${p.email.split("@")[0]}`, version: "2.1.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/metamcp/${p.endpoint}/mcp`), {
    requestInit: { headers: { ...as(p), ...extraHeaders } },
  });
  await client.connect(transport);
  return { client, sessionId: transport.sessionId! };
}

export async function overSse(url: string, p: typeof ADA) {
  const client = new Client({ name: `agent-of-${p.email.split("@")[0]}`, version: "3.0.0" });
  const transport = new SSEClientTransport(new URL(`${url}/metamcp/${p.endpoint}/sse`), {
    eventSourceInit: {
      fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers as object), ...as(p) } }),
    },
    requestInit: { headers: as(p) },
  });
  await client.connect(transport);
  return { client };
}
