import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";

/**
 * An app that answers like MetaMCP's public endpoint `/metamcp/<endpoint>/mcp` (streamable HTTP,
 * stateful sessions, a real SDK server) with two tools, `echo {text}` and `sleep {ms}`, and checks the
 * API key in upstream's order: `X-API-Key`, then `Authorization: Bearer`, then `?api_key=` (401 JSON
 * otherwise, as upstream's middleware answers).
 */
export interface McpApp {
  url: string;
  /** Every key presented (in the order found) and whether it was accepted. */
  seenKeys: { key: string; accepted: boolean }[];
  /** The Authorization header of each request that reached the app (to check what the proxy forwards). */
  close(): Promise<void>;
}

export async function startMcpApp(options: { endpoint: string; apiKey: string }): Promise<McpApp> {
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const seenKeys: McpApp["seenKeys"] = [];
  const keyOf = (req: IncomingMessage, url: URL): string | undefined => {
    const header = req.headers["x-api-key"];
    if (typeof header === "string" && header) return header;
    const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
    if (bearer) return bearer;
    return url.searchParams.get("api_key") ?? undefined;
  };
  const newServer = () => {
    const server = new McpServer(
      { name: "fake-metamcp", version: "0.0.0" },
      { capabilities: { logging: {} } },
    );
    server.registerTool(
      "echo",
      { description: "echoes its text", inputSchema: { text: z.string() } },
      async ({ text }) => ({ content: [{ type: "text", text }] }),
    );
    server.registerTool(
      "sleep",
      { description: "answers after ms milliseconds", inputSchema: { ms: z.number() } },
      async ({ ms }) => {
        await new Promise((r) => setTimeout(r, ms));
        return { content: [{ type: "text", text: `slept ${ms} ms` }] };
      },
    );
    server.registerTool(
      "announce_then_sleep",
      {
        description: "logs a line at once (the answer's stream starts), then sleeps ms",
        inputSchema: { ms: z.number() },
      },
      async ({ ms }, extra) => {
        await extra.sendNotification({
          method: "notifications/message",
          params: { level: "info", data: "started" },
        });
        await new Promise((r) => setTimeout(r, ms));
        return { content: [{ type: "text", text: `slept ${ms} ms` }] };
      },
    );
    return server;
  };

  const http: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname !== `/metamcp/${options.endpoint}/mcp`) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not found"}');
      return;
    }
    const key = keyOf(req, url);
    const accepted = key === options.apiKey;
    if (key) seenKeys.push({ key, accepted });
    if (!accepted) {
      res
        .writeHead(401, { "content-type": "application/json" })
        .end(JSON.stringify({ error: key ? "invalid_api_key" : "Authentication required" }));
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : undefined;
    const sid = req.headers["mcp-session-id"];
    let transport = typeof sid === "string" ? sessions.get(sid) : undefined;
    if (!transport) {
      if (req.method !== "POST" || !isInitializeRequest(body)) {
        res.writeHead(typeof sid === "string" ? 404 : 400, { "content-type": "application/json" }).end(
          JSON.stringify({
            jsonrpc: "2.0",
            error: { code: -32000, message: "Session not found" },
            id: null,
          }),
        );
        return;
      }
      const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          sessions.set(id, t);
        },
      });
      t.onclose = () => {
        if (t.sessionId) sessions.delete(t.sessionId);
      };
      await newServer().connect(t);
      transport = t;
    }
    await transport.handleRequest(req, res, body);
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    seenKeys,
    async close() {
      for (const t of sessions.values()) await t.close().catch(() => undefined);
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    },
  };
}
