import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  databricksToolsContext,
  databricksToolsFetch,
  installDatabricksToolsFetch,
  routeOf,
} from "../../overlay/apps/backend/src/databricks-tools.js";
import { clearSecrets } from "../../src/log/secrets.js";
import { ToolContexts } from "../../src/runtime/databricks-tools/contexts.js";
import { startToolsGateway, type ToolsGateway } from "../../src/runtime/databricks-tools/gateway.js";
import { type FakeWorkspace, REGION_TOOL, startFakeWorkspace } from "./fake-workspace-mcp.js";

/**
 * The backend's fetch wrapper (overlay/apps/backend/src/databricks-tools.ts) in front of the real gateway and
 * a fake workspace: MetaMCP's MCP client (the SDK's StreamableHTTPClientTransport, which calls `fetch` as
 * given) reaches a managed server on the workspace with the app's token; requests for any other host go out
 * untouched, never with the gateway's secret or a workspace token.
 */
const TOKEN = "ws-token-wrapper-CCCCCCCCCCCC";
const PERSON = "ws-token-person-PPPPPPPPPPPP";
const contexts = new ToolContexts();
let ws: FakeWorkspace;
let gw: ToolsGateway;
let other: Server;
let otherOrigin: string;
const otherSeen: IncomingMessage["headers"][] = [];
const lines: string[] = [];
let wrapped: typeof fetch;

beforeAll(async () => {
  ws = await startFakeWorkspace((t) => t === TOKEN || t === PERSON);
  gw = await startToolsGateway({
    contexts,
    workspaceOrigin: ws.origin,
    token: () => ({ ok: true, token: TOKEN }),
    principalId: "sp-app-id",
    log: { info: (m) => lines.push(m), warn: (m) => lines.push(m) },
  });
  other = createServer((req, res) => {
    otherSeen.push(req.headers);
    res.writeHead(401, { "content-type": "application/json" });
    res.end('{"error":"who are you"}');
  });
  await new Promise<void>((r) => other.listen(0, "127.0.0.1", () => r()));
  otherOrigin = `http://localhost:${(other.address() as AddressInfo).port}`;
  wrapped = databricksToolsFetch(fetch, {
    origin: ws.origin,
    enabled: true,
    port: String(gw.port),
    secret: gw.secret,
  });
});
afterAll(async () => {
  await gw?.close();
  await ws?.close();
  await new Promise<void>((r) => other?.close(() => r()));
  clearSecrets();
});

async function callRegion(serverUrl: string, f: typeof fetch = wrapped) {
  const client = new Client({ name: "metamcp-like", version: "0.0.0" });
  // As MetaMCP's client.ts builds it: the URL, and the headers (a static bearer token) in requestInit.
  const transport = new StreamableHTTPClientTransport(new URL(serverUrl), {
    requestInit: { headers: { Authorization: "Bearer a-static-token-someone-pasted" } },
    fetch: f,
  });
  await client.connect(transport);
  try {
    return await client.callTool({ name: REGION_TOOL, arguments: { country: "DE" } });
  } finally {
    await client.close();
  }
}

describe("the backend's fetch wrapper", () => {
  it("a workspace URL reaches the managed server through the gateway with the app's token, not the static one", async () => {
    const result = await callRegion(`${ws.origin}/api/2.0/mcp/functions/main/tools`);
    expect(JSON.parse((result.content as { text: string }[])[0]!.text)).toMatchObject({
      region: "EMEA",
      token: TOKEN,
    });
    expect(ws.requests.length).toBeGreaterThan(0);
    for (const r of ws.requests) {
      expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(r.headers["x-metamcp-gateway-secret"]).toBeUndefined();
    }
  });

  it("another host gets the request as MetaMCP made it: no token, no gateway secret (a server pointed elsewhere harvests nothing)", async () => {
    await expect(callRegion(`${otherOrigin}/api/2.0/mcp/genie`)).rejects.toThrow();
    expect(otherSeen.length).toBeGreaterThan(0);
    for (const h of otherSeen) {
      expect(h.authorization).toBe("Bearer a-static-token-someone-pasted");
      expect(h["x-metamcp-gateway-secret"]).toBeUndefined();
      expect(JSON.stringify(h)).not.toContain(TOKEN);
      expect(JSON.stringify(h)).not.toContain(gw.secret);
    }
  });

  it("paths outside /api/2.0/mcp on the workspace are refused before the gateway (403), and by the gateway after URL folding", async () => {
    const before = ws.requests.length;
    for (const p of ["/api/2.0/secrets/list", "/api/2.0/mcp/../2.0/secrets/list", "/api/2.0/mcp", "/"]) {
      const res = await wrapped(`${ws.origin}${p}`, { method: "POST", body: "{}" });
      expect(res.status, p).toBe(403);
    }
    // `%2e%2e` folds to `..` in URL parsing: what is left is refused all the same.
    const folded = await wrapped(`${ws.origin}/api/2.0/mcp/genie/%2e%2e/%2e%2e/x`, { method: "GET" });
    expect(folded.status).toBe(403);
    expect(ws.requests.length).toBe(before);
  });

  it("#identity=user outside any request (background) is refused, never called as the app", async () => {
    const before = ws.requests.length;
    await expect(callRegion(`${ws.origin}/api/2.0/mcp/functions/main/tools#identity=user`)).rejects.toThrow(
      /need an MCP session/,
    );
    expect(ws.requests.length).toBe(before);
  });

  it("#identity=user inside a person's request: the context middleware takes the handle off the request and the call carries that person's token", async () => {
    const handle = contexts.open({ token: PERSON, email: "ada@example.com" });
    const req = { headers: { "x-metamcp-databricks-context": handle }, url: "/metamcp/open/mcp" };
    const result = await new Promise<unknown>((resolve, reject) =>
      databricksToolsContext(req as never, {} as never, () => {
        // As MetaMCP's handler: the header is gone before any of its code reads the request.
        expect(req.headers["x-metamcp-databricks-context"]).toBeUndefined();
        callRegion(`${ws.origin}/api/2.0/mcp/functions/main/tools#identity=user`).then(resolve, reject);
      }),
    );
    expect(JSON.parse((result as { content: { text: string }[] }).content[0]!.text).token).toBe(PERSON);
    // The same handle on the OpenAPI route is refused: one connection there serves every caller.
    const openapi = { headers: { "x-metamcp-databricks-context": handle }, url: "/metamcp/open/api/tools/x" };
    await expect(
      new Promise((resolve, reject) =>
        databricksToolsContext(openapi as never, {} as never, () => {
          callRegion(`${ws.origin}/api/2.0/mcp/functions/main/tools#identity=user`).then(resolve, reject);
        }),
      ),
    ).rejects.toThrow(/need an MCP session/);
  });

  it("routes as design §2 names them", () => {
    expect(routeOf("/metamcp/ep/mcp")).toBe("endpoint");
    expect(routeOf("/metamcp/ep/sse")).toBe("endpoint");
    expect(routeOf("/metamcp/ep/message?sessionId=1")).toBe("endpoint");
    expect(routeOf("/metamcp/ep/api/tools/x")).toBe("openapi");
    expect(routeOf("/metamcp/ep/api/openapi.json")).toBe("openapi");
    expect(routeOf("/mcp-proxy/server/mcp?url=x")).toBe("inspector");
    expect(routeOf("/mcp-proxy/metamcp/ns/mcp")).toBe("namespace");
    expect(routeOf("/trpc/frontend/x")).toBe("ui");
  });

  it("with the tools off, workspace URLs are refused and nothing is sent", async () => {
    const off = databricksToolsFetch(fetch, {
      origin: ws.origin,
      enabled: false,
      port: undefined,
      secret: undefined,
    });
    const before = ws.requests.length;
    const res = await off(`${ws.origin}/api/2.0/mcp/sql`, { method: "POST", body: "{}" });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("METAMCP_DATABRICKS_TOOLS=off");
    expect(ws.requests.length).toBe(before);
  });

  it("installing takes the secret out of the environment (no process MetaMCP starts inherits it) and wraps fetch once", () => {
    const original = globalThis.fetch;
    const mark = Symbol.for("metamcp-databricks.tools-fetch");
    const g = globalThis as unknown as Record<symbol, unknown>;
    const wasInstalled = g[mark];
    // Importing the module above installed it already (with this process's env): start from scratch.
    delete g[mark];
    try {
      const env: NodeJS.ProcessEnv = {
        DATABRICKS_HOST: "adb-1.2.azuredatabricks.net",
        METAMCP_TOOLS_GATEWAY_PORT: "1",
        METAMCP_TOOLS_GATEWAY_SECRET: "s".repeat(64),
      };
      installDatabricksToolsFetch(env);
      expect(env.METAMCP_TOOLS_GATEWAY_SECRET).toBeUndefined();
      expect(globalThis.fetch).not.toBe(original);
      const once = globalThis.fetch;
      const again: NodeJS.ProcessEnv = { METAMCP_TOOLS_GATEWAY_SECRET: "again" };
      installDatabricksToolsFetch(again);
      expect(globalThis.fetch).toBe(once);
      expect(again.METAMCP_TOOLS_GATEWAY_SECRET).toBeUndefined();
    } finally {
      globalThis.fetch = original;
      g[mark] = wasInstalled;
    }
  });
});
