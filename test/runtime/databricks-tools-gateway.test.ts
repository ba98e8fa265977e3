import { request as httpRequest } from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clearSecrets } from "../../src/log/secrets.js";
import { waitFor } from "../../src/retry.js";
import { CONTEXT_HEADER, ToolContexts } from "../../src/runtime/databricks-tools/contexts.js";
import {
  GATEWAY_IDENTITY_HEADER,
  GATEWAY_ROUTE_HEADER,
  GATEWAY_SECRET_HEADER,
  startToolsGateway,
  type ToolsGateway,
} from "../../src/runtime/databricks-tools/gateway.js";
import type { CurrentToken } from "../../src/runtime/databricks-tools/tokens.js";
import { DENIED, type FakeWorkspace, REGION_TOOL, startFakeWorkspace } from "./fake-workspace-mcp.js";

/**
 * The tools gateway (design §2): the one place a workspace token is attached, loopback only, behind a
 * per-start secret. These tests talk to it as the backend's fetch wrapper does (secret + identity headers)
 * and as an attacker would (no secret, other paths, other hosts), against a small fake workspace.
 */
const SP = "6c0e1f9a-0000-4000-8000-000000000001";
const issued = ["ws-token-AAAAAAAAAAAAAAAAAAAA", "ws-token-BBBBBBBBBBBBBBBBBBBB"];
let current: CurrentToken = { ok: true, token: issued[0]! };
const valid = new Set(issued);
const lines: string[] = [];
let ws: FakeWorkspace;
let gw: ToolsGateway;

beforeAll(async () => {
  ws = await startFakeWorkspace((t) => valid.has(t));
  gw = await startToolsGateway({
    workspaceOrigin: ws.origin,
    token: () => current,
    principalId: SP,
    log: { info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`) },
    postTimeoutMs: 1500,
  });
});
afterAll(async () => {
  await gw?.close();
  await ws?.close();
  clearSecrets();
});
afterEach(() => {
  current = { ok: true, token: issued[0]! };
});

const url = (p: string) => `http://127.0.0.1:${gw.port}${p}`;
const asBackend = (extra: Record<string, string> = {}): Record<string, string> => ({
  [GATEWAY_SECRET_HEADER]: gw.secret,
  ...extra,
});
const rpc = (method: string, id = 7) =>
  JSON.stringify({ jsonrpc: "2.0", id, method, params: method === "tools/call" ? { name: "x" } : {} });
const post = (p: string, body: string, headers: Record<string, string> = asBackend()) =>
  fetch(url(p), {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body,
  });

/** A real MCP SDK client whose requests reach the gateway as the backend's wrapper sends them. */
async function sdkClient(p: string, identity = "app") {
  const client = new Client({ name: "test", version: "0.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url(p)), {
    fetch: (input, init) => {
      const headers = new Headers(init?.headers);
      headers.set(GATEWAY_SECRET_HEADER, gw.secret);
      headers.set(GATEWAY_IDENTITY_HEADER, identity);
      return fetch(input, { ...init, headers });
    },
  });
  await client.connect(transport);
  return client;
}

describe("who may use the gateway", () => {
  it("a process in the app without the secret, or with a wrong one, gets 401 and the workspace sees nothing", async () => {
    const before = ws.requests.length;
    const attempts: Record<string, string>[] = [
      {},
      { [GATEWAY_SECRET_HEADER]: "" },
      { [GATEWAY_SECRET_HEADER]: "0".repeat(64) },
      { [GATEWAY_SECRET_HEADER]: gw.secret.slice(0, -1) },
      { [GATEWAY_SECRET_HEADER]: `${gw.secret}0` },
      { authorization: `Bearer ${gw.secret}` },
    ];
    for (const headers of attempts) {
      const res = await post("/api/2.0/mcp/functions/main/tools", rpc("tools/list"), headers);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBeNull();
    }
    expect(ws.requests.length).toBe(before);
    expect(gw.secret).toMatch(/^[0-9a-f]{64}$/);
  });

  it("listens on loopback only", () => {
    expect(gw.address).toBe("127.0.0.1");
  });
});

describe("what the gateway forwards", () => {
  it("a real MCP client lists and calls a tool; the workspace gets the keeper's token, never the caller's Authorization", async () => {
    const client = await sdkClient("/api/2.0/mcp/functions/main/tools");
    const tools = await client.listTools();
    expect(tools.tools.map((t) => t.name)).toEqual([REGION_TOOL]);
    const result = await client.callTool({ name: REGION_TOOL, arguments: { country: "FR" } });
    expect(JSON.parse((result.content as { text: string }[])[0]!.text)).toEqual({
      country: "FR",
      region: "EMEA",
      token: issued[0],
    });
    await client.close();
    const before = ws.requests.length;
    const res = await post(
      "/api/2.0/mcp/functions/main/tools",
      rpc("tools/list"),
      asBackend({ authorization: "Bearer sk_mt_someones-metamcp-key" }),
    );
    expect(res.status).toBe(200);
    expect(ws.requests.at(-1)?.headers.authorization).toBe(`Bearer ${issued[0]}`);
    expect(ws.requests.length).toBe(before + 1);
  });

  it("header allow-lists both ways: only MCP's headers reach the workspace; no set-cookie, www-authenticate or others come back", async () => {
    const res = await post(
      "/api/2.0/mcp/sql",
      rpc("tools/list"),
      asBackend({
        cookie: "metamcp.session=zzz",
        "x-forwarded-email": "ada@example.com",
        "x-forwarded-access-token": "someones-token",
        "x-api-key": "sk_mt_key",
        "mcp-session-id": "sess-1",
        "mcp-protocol-version": "2025-06-18",
        "x-metamcp-identity-secret": "identity-secret",
        host: "evil.example",
      }),
    );
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { headers: Record<string, string> };
    const names = Object.keys(seen.headers).sort();
    for (const n of names)
      expect([
        "accept",
        "accept-encoding",
        "accept-language",
        "authorization",
        "connection",
        "content-length",
        "content-type",
        "host",
        "mcp-protocol-version",
        "mcp-session-id",
        "sec-fetch-mode",
        "user-agent",
      ]).toContain(n);
    expect(seen.headers.authorization).toBe(`Bearer ${issued[0]}`);
    expect(seen.headers.host).toBe(new URL(ws.origin).host);
    expect(seen.headers["mcp-session-id"]).toBe("sess-1");
    expect(res.headers.get("set-cookie")).toBeNull();
    expect(res.headers.get("www-authenticate")).toBeNull();
    expect(res.headers.get("x-databricks-org-id")).toBeNull();
    expect(res.headers.get("mcp-session-id")).toBe("sess-1");
    expect(res.headers.get("cache-control")).toBe("no-store");
  });

  it("path tricks are refused with 403 and a log line, and never reach the workspace", async () => {
    const before = ws.requests.length;
    for (const p of [
      "/api/2.0/mcp/../2.0/secrets/list",
      "/api/2.0/mcp/%2e%2e/2.0/secrets/list",
      "/api/2.0/mcp/genie%2F..%2F..%2Fsecrets",
      "/api/2.0/mcp//genie",
      "/api/2.0/mcp\\..\\secrets",
      "/API/2.0/mcp/genie",
      "/api/2.0/secrets/list",
    ]) {
      // Raw, as sent: fetch would normalise the dots before the gateway saw them.
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          { host: "127.0.0.1", port: gw.port, path: p, method: "GET", headers: asBackend() },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", reject);
        req.end();
      });
      expect(status, p).toBe(403);
    }
    expect(ws.requests.length).toBe(before);
    expect(lines.filter((l) => l.includes("databricks-tools: refused GET")).length).toBeGreaterThanOrEqual(7);
  });

  it("only MCP's methods (GET, POST, DELETE) are forwarded", async () => {
    const before = ws.requests.length;
    for (const method of ["PUT", "PATCH", "OPTIONS", "HEAD"]) {
      const res = await fetch(url("/api/2.0/mcp/sql"), { method, headers: asBackend() });
      expect(res.status, method).toBe(405);
    }
    expect(ws.requests.length).toBe(before);
  });

  it("the upstream is the configured workspace, never a host the request names (absolute-form, Host)", async () => {
    const before = ws.requests.length;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: "127.0.0.1",
          port: gw.port,
          path: "http://evil.example/api/2.0/mcp/genie",
          headers: asBackend({ host: "evil.example" }),
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(403);
    expect(ws.requests.length).toBe(before);
  });

  it("a redirect from the workspace is refused, never followed", async () => {
    const before = ws.requests.length;
    const res = await post("/api/2.0/mcp/genie/redirect", rpc("initialize"));
    expect(res.status).toBe(502);
    expect(res.headers.get("location")).toBeNull();
    expect(((await res.json()) as { message: string }).message).toMatch(
      /redirect \(HTTP 302\).*never followed/,
    );
    expect(ws.requests.length).toBe(before + 1);
  });

  it("an SSE stream is passed on as it comes, not buffered", async () => {
    const res = await fetch(url("/api/2.0/mcp/genie/stream"), {
      headers: asBackend({ accept: "text/event-stream" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    // The first event arrives while the workspace still holds the second back.
    await waitFor(
      async () => {
        const { value } = await reader.read();
        text += decoder.decode(value ?? new Uint8Array());
        return text.includes('"n":1') ? true : undefined;
      },
      { timeoutMs: 5000, what: "the first event" },
    );
    expect(text).not.toContain('"n":2');
    ws.releaseStream();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    expect(text).toContain('"n":2');
  });

  it("a POST the workspace does not answer in time is cut (the cap under the Apps proxy's 120 s)", async () => {
    const res = await post("/api/2.0/mcp/genie/slow", rpc("initialize"));
    expect(res.status).toBe(504);
    const call = await post("/api/2.0/mcp/genie/slow", rpc("tools/call", 9));
    expect(call.status).toBe(200);
    expect(await call.json()).toEqual({
      jsonrpc: "2.0",
      id: 9,
      result: {
        isError: true,
        content: [{ type: "text", text: expect.stringMatching(/did not answer within 1.5 s/) }],
      },
    });
  });
});

describe("refusals a person understands", () => {
  it("a 403 from Unity Catalog on tools/call is the tool's error result naming the GRANT to ask for", async () => {
    const client = await sdkClient("/api/2.0/mcp/functions/main/secret");
    const result = await client.callTool({ name: REGION_TOOL, arguments: { country: "FR" } });
    expect(result.isError).toBe(true);
    const text = (result.content as { text: string }[])[0]!.text;
    expect(text).toContain(`service principal ${SP}`);
    expect(text).toContain(DENIED.message);
    expect(text).toContain(`GRANT EXECUTE ON SCHEMA main.secret TO \`${SP}\``);
    await client.close();
  });

  it("a managed server the workspace does not offer says so; on initialize as the HTTP answer", async () => {
    const res = await post("/api/2.0/mcp/genie/off", rpc("initialize"));
    expect(res.status).toBe(404);
    expect(((await res.json()) as { message: string }).message).toMatch(
      /does not offer Databricks' managed MCP server for Genie/,
    );
  });

  it("#identity=user without a handle (this gateway has no per-person tokens) is refused (403, the workspace never called), never answered as the app", async () => {
    const before = ws.requests.length;
    const res = await post(
      "/api/2.0/mcp/functions/main/tools",
      rpc("initialize"),
      asBackend({ [GATEWAY_IDENTITY_HEADER]: "user", [GATEWAY_ROUTE_HEADER]: "endpoint" }),
    );
    expect(res.status).toBe(403);
    expect(((await res.json()) as { message: string }).message).toMatch(
      /needs your own workspace token, and none came .* never called as the app/,
    );
    const call = await post(
      "/api/2.0/mcp/functions/main/tools",
      rpc("tools/call"),
      asBackend({ [GATEWAY_IDENTITY_HEADER]: "user" }),
    );
    expect(((await call.json()) as { result: { isError: boolean } }).result.isError).toBe(true);
    const odd = await post(
      "/api/2.0/mcp/functions/main/tools",
      rpc("initialize"),
      asBackend({ [GATEWAY_IDENTITY_HEADER]: "someone-else" }),
    );
    expect(odd.status).toBe(403);
    expect(ws.requests.length).toBe(before);
  });

  it("METAMCP_DATABRICKS_APP_IDENTITY=off: nothing runs as the service principal, also servers made earlier", async () => {
    const off = await startToolsGateway({
      workspaceOrigin: ws.origin,
      token: () => current,
      principalId: SP,
      log: { info: () => {}, warn: () => {} },
      appIdentity: false,
    });
    try {
      const before = ws.requests.length;
      const res = await fetch(`http://127.0.0.1:${off.port}/api/2.0/mcp/functions/main/tools`, {
        method: "POST",
        headers: { [GATEWAY_SECRET_HEADER]: off.secret, "content-type": "application/json" },
        body: rpc("tools/call"),
      });
      const text = ((await res.json()) as { result: { content: { text: string }[] } }).result.content[0]!
        .text;
      expect(text).toContain("METAMCP_DATABRICKS_APP_IDENTITY=off");
      expect(ws.requests.length).toBe(before);
    } finally {
      await off.close();
    }
  });

  it("no token (expired, not renewed): 503 with the reason; tools/call gets it as its error", async () => {
    current = {
      ok: false,
      reason: "the app's workspace token expired at 2026-12-07T13:00:00.000Z and could not be renewed: x",
    };
    const before = ws.requests.length;
    const res = await post("/api/2.0/mcp/functions/main/tools", rpc("initialize"));
    expect(res.status).toBe(503);
    expect(((await res.json()) as { message: string }).message).toContain(
      "expired at 2026-12-07T13:00:00.000Z",
    );
    const call = await post("/api/2.0/mcp/functions/main/tools", rpc("tools/call"));
    const text = ((await call.json()) as { result: { content: { text: string }[] } }).result.content[0]!.text;
    expect(text).toContain("could not be renewed");
    expect(ws.requests.length).toBe(before);
  });

  it("a renewed token is used from the next request on", async () => {
    current = { ok: true, token: issued[1]! };
    await post("/api/2.0/mcp/functions/main/tools", rpc("tools/list"));
    expect(ws.requests.at(-1)?.headers.authorization).toBe(`Bearer ${issued[1]}`);
  });
});

describe("logs", () => {
  it("every line names method, kind, ids, status and principal; no line holds a token or the secret", () => {
    expect(
      lines.some((l) => /databricks-tools: POST functions main\.tools tools\/call → 200 as app/.test(l)),
    ).toBe(true);
    for (const l of lines) {
      for (const t of issued) expect(l).not.toContain(t);
      expect(l).not.toContain(gw.secret);
      expect(l).not.toContain("someones-token");
      expect(l).not.toContain("sk_mt_");
    }
  });
});

describe("per-person servers (#identity=user) through the gateway", () => {
  const ADA = "ws-token-ada-DDDDDDDDDDDDDDDD";
  const BOB = "ws-token-bob-EEEEEEEEEEEEEEEE";
  const userLines: string[] = [];
  let clock = 1_000_000;
  const contexts = new ToolContexts(() => clock);
  let ugw: ToolsGateway;
  beforeAll(async () => {
    valid.add(ADA);
    valid.add(BOB);
    ugw = await startToolsGateway({
      workspaceOrigin: ws.origin,
      token: () => current,
      principalId: SP,
      log: { info: (m) => userLines.push(m), warn: (m) => userLines.push(m) },
      contexts,
    });
  });
  afterAll(async () => {
    await ugw?.close();
  });
  const asUser = (handle: string | undefined, route = "endpoint", extra: Record<string, string> = {}) => ({
    [GATEWAY_SECRET_HEADER]: ugw.secret,
    [GATEWAY_IDENTITY_HEADER]: "user",
    [GATEWAY_ROUTE_HEADER]: route,
    ...(handle ? { [CONTEXT_HEADER]: handle } : {}),
    ...extra,
  });
  const upost = (p: string, body: string, headers: Record<string, string>) =>
    fetch(`http://127.0.0.1:${ugw.port}${p}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        ...headers,
      },
      body,
    });
  /** A real SDK client as MetaMCP's for one person's request: the wrapper's headers with that request's handle. */
  async function asPerson(handle: string) {
    const client = new Client({ name: "test", version: "0.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(
        new URL(`http://127.0.0.1:${ugw.port}/api/2.0/mcp/functions/main/tools`),
        {
          fetch: (input, init) => {
            const headers = new Headers(init?.headers);
            for (const [k, v] of Object.entries(asUser(handle))) headers.set(k, v);
            return fetch(input, { ...init, headers });
          },
        },
      ),
    );
    return client;
  }
  const tokenSeen = (r: unknown) =>
    (JSON.parse((r as { content: { text: string }[] }).content[0]!.text) as { token: string }).token;

  it("each person's call carries that person's own token, swapped from the handle; never the app's", async () => {
    const ada = contexts.open({ token: ADA, email: "ada@example.com" });
    const bob = contexts.open({ token: BOB, email: "bob@example.com" });
    const a = await asPerson(ada);
    const b = await asPerson(bob);
    expect(tokenSeen(await a.callTool({ name: REGION_TOOL, arguments: { country: "DE" } }))).toBe(ADA);
    expect(tokenSeen(await b.callTool({ name: REGION_TOOL, arguments: { country: "DE" } }))).toBe(BOB);
    await a.close();
    await b.close();
    expect(userLines.some((l) => l.includes("as ada@example.com"))).toBe(true);
    for (const l of userLines) for (const t of [ADA, BOB, issued[0]!]) expect(l).not.toContain(t);
  });

  it("an unknown, a released-and-expired or a missing handle is refused with the reason, the workspace never called", async () => {
    const ada = contexts.open({ token: ADA, email: "ada@example.com" });
    contexts.release(ada);
    clock += 119_000;
    expect((await upost("/api/2.0/mcp/functions/main/tools", rpc("initialize"), asUser(ada))).status).toBe(
      200,
    );
    clock += 2_000;
    const before = ws.requests.length;
    for (const h of [ada, "f".repeat(64), undefined]) {
      const res = await upost("/api/2.0/mcp/functions/main/tools", rpc("initialize"), asUser(h));
      expect(res.status).toBe(403);
      expect(((await res.json()) as { message: string }).message).toMatch(/none came with this request/);
    }
    expect(ws.requests.length).toBe(before);
  });

  it("the OpenAPI route (one session for every caller) and background work are refused, even with a handle", async () => {
    const ada = contexts.open({ token: ADA, email: "ada@example.com" });
    const before = ws.requests.length;
    for (const route of ["openapi", "background"]) {
      const res = await upost("/api/2.0/mcp/functions/main/tools", rpc("tools/call"), asUser(ada, route));
      const body = (await res.json()) as { result: { isError: boolean; content: { text: string }[] } };
      expect(body.result.isError).toBe(true);
      expect(body.result.content[0]!.text).toMatch(/need an MCP session \(streamable HTTP or SSE\)/);
    }
    expect(ws.requests.length).toBe(before);
  });

  it("a process without the gateway secret gets nothing for a handle, however good", async () => {
    const ada = contexts.open({ token: ADA, email: "ada@example.com" });
    const before = ws.requests.length;
    const headers = asUser(ada);
    delete (headers as Record<string, string>)[GATEWAY_SECRET_HEADER];
    expect((await upost("/api/2.0/mcp/functions/main/tools", rpc("initialize"), headers)).status).toBe(401);
    expect(ws.requests.length).toBe(before);
  });

  it("an upstream Mcp-Session-Id opened by one principal is refused for another, never forwarded", async () => {
    const ada = contexts.open({ token: ADA, email: "ada@example.com" });
    const bob = contexts.open({ token: BOB, email: "bob@example.com" });
    // The fake's /sql answers Mcp-Session-Id: sess-1 — here opened by Ada.
    const opened = await upost("/api/2.0/mcp/sql", rpc("initialize"), asUser(ada));
    expect(opened.headers.get("mcp-session-id")).toBe("sess-1");
    const before = ws.requests.length;
    const stolen = await upost(
      "/api/2.0/mcp/sql",
      rpc("tools/call"),
      asUser(bob, "endpoint", { "mcp-session-id": "sess-1" }),
    );
    const body = (await stolen.json()) as { result: { isError: boolean; content: { text: string }[] } };
    expect(body.result.isError).toBe(true);
    expect(body.result.content[0]!.text).toMatch(/opened by someone else/);
    const asApp = await upost("/api/2.0/mcp/sql", rpc("initialize"), {
      [GATEWAY_SECRET_HEADER]: ugw.secret,
      "mcp-session-id": "sess-1",
    });
    expect(asApp.status).toBe(403);
    expect(ws.requests.length).toBe(before);
    const own = await upost(
      "/api/2.0/mcp/sql",
      rpc("initialize"),
      asUser(ada, "endpoint", { "mcp-session-id": "sess-1" }),
    );
    expect(own.status).toBe(200);
  });
});
