import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

/**
 * A small stand-in for a workspace's managed MCP servers, for the tools-gateway tests only (the full stand-in
 * is src/local/platform/managed-mcp.ts). Real MCP SDK servers where an MCP client talks to it; shaped answers
 * (Databricks' `{error_code, message}`, a redirect, odd headers, a held SSE stream) where a test needs one.
 * Every request is recorded with its headers; a bearer token `isValid` refuses gets 401.
 */
export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
}

export interface FakeWorkspace {
  origin: string;
  requests: SeenRequest[];
  /** Lets the held SSE stream of /api/2.0/mcp/genie/stream send its second event. */
  releaseStream(): void;
  close(): Promise<void>;
}

/** The function-like server's one tool, named as UC functions are (catalog__schema__function, unverified). */
export const REGION_TOOL = "main__tools__region_of";
/** What the workspace answers for a UC function the caller may not EXECUTE (shape: design §7, [S14]). */
export const DENIED = {
  error_code: "PERMISSION_DENIED",
  message: "User does not have EXECUTE on Routine or Model 'main.secret.leak'",
};

function functionsServer(tokenOf: () => string): McpServer {
  const s = new McpServer({ name: "fake-uc-functions", version: "0.0.0" });
  s.registerTool(
    REGION_TOOL,
    { description: "The sales region of a country", inputSchema: { country: z.string() } },
    async ({ country }) => ({
      content: [{ type: "text", text: JSON.stringify({ country, region: "EMEA", token: tokenOf() }) }],
    }),
  );
  return s;
}

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * `isValid` says whether a bearer token counts. With `rest`, every path outside /api/2.0/mcp/ is passed to
 * that origin as it came (the Databricks stand-in: OIDC, credentials, Apps API), so this can be the app's
 * whole DATABRICKS_HOST.
 */
export async function startFakeWorkspace(
  isValid: (token: string) => boolean | Promise<boolean>,
  rest?: string,
): Promise<FakeWorkspace> {
  const requests: SeenRequest[] = [];
  let release: () => void = () => {};
  const released = new Promise<void>((r) => {
    release = r;
  });
  const server: Server = createServer(async (req, res) => {
    if (rest && !(req.url ?? "").startsWith("/api/2.0/mcp/")) {
      const body = req.method === "GET" || req.method === "HEAD" ? undefined : await bodyOf(req);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers))
        if (typeof v === "string" && k !== "host" && k !== "content-length") headers.set(k, v);
      const answer = await fetch(`${rest}${req.url}`, { method: req.method, headers, body });
      res.writeHead(answer.status, {
        "content-type": answer.headers.get("content-type") ?? "application/json",
      });
      res.end(Buffer.from(await answer.arrayBuffer()));
      return;
    }
    requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    if (!token || !(await isValid(token)))
      return send(401, { error_code: "UNAUTHENTICATED", message: "Invalid access token." });
    const path = (req.url ?? "").split("?")[0];
    if (path === "/api/2.0/mcp/functions/main/tools" || path === "/api/2.0/mcp/functions/main/secret") {
      const raw = req.method === "POST" ? await bodyOf(req) : "";
      const parsed = raw ? JSON.parse(raw) : undefined;
      if (path.endsWith("/secret") && parsed?.method === "tools/call") return send(403, DENIED);
      // Stateless, as Databricks' own client uses these servers: a server and transport per request.
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      await functionsServer(() => token).connect(transport);
      res.on("close", () => void transport.close());
      return transport.handleRequest(req, res, parsed);
    }
    if (path === "/api/2.0/mcp/genie/redirect")
      return send(302, {}, { location: "http://127.0.0.1:1/api/2.0/secrets/list" });
    if (path === "/api/2.0/mcp/genie/off")
      return send(404, { error_code: "FEATURE_DISABLED", message: "Managed MCP servers are not enabled" });
    if (path === "/api/2.0/mcp/sql") {
      res.writeHead(200, {
        "content-type": "application/json",
        "mcp-session-id": "sess-1",
        "cache-control": "no-store",
        "set-cookie": "ws-session=abc; HttpOnly",
        "www-authenticate": 'Bearer resource_metadata="https://ws/.well-known/oauth-protected-resource"',
        "x-databricks-org-id": "1234",
      });
      return res.end(JSON.stringify({ headers: req.headers }));
    }
    if (path === "/api/2.0/mcp/genie/stream") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write(`data: ${JSON.stringify({ n: 1 })}\n\n`);
      await released;
      res.write(`data: ${JSON.stringify({ n: 2 })}\n\n`);
      return res.end();
    }
    if (path === "/api/2.0/mcp/genie/slow") return; // never answers
    send(404, { error_code: "ENDPOINT_NOT_FOUND", message: `No API found for '${path}'` });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    releaseStream: () => release(),
    close: () =>
      new Promise<void>((r) => {
        release();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
