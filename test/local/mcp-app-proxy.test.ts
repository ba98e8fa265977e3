import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { freePort } from "../../src/local/postgres.js";
import { localUserToken } from "../../src/local/user-token.js";
import { runCli } from "../support/cli.js";
import { createFakeAppTree, freeInternalPorts, type InternalPorts } from "../support/fake-app-tree.js";

/**
 * An `mcp-` app under `local`, shared with one person: the stand-in Apps proxy answers `/mcp` with the
 * endpoint METAMCP_DEFAULT_ENDPOINT names (what AI Playground calls), and refuses, as the real proxy does,
 * anyone APP_CAN_USE / APP_CAN_MANAGE do not name, on every route. Real MCP SDK clients, the fake MetaMCP
 * tree behind our runtime's router.
 */
describe("an mcp- app through the local Apps proxy, shared with APP_CAN_USE", () => {
  let work: string;
  let internal: InternalPorts | undefined;
  let appUrl: string;
  const stateDir = () => path.join(work, "state");
  const cli = (args: string[]) =>
    runCli(args, {
      cwd: work,
      env: {
        APP_DIR: path.join(work, "app"),
        LOCAL_STATE_DIR: stateDir(),
        APP_BASE_NAME: "mcp-gw",
        // The fake tree's endpoint that needs no MetaMCP key: /mcp answered without one proves it is this one.
        METAMCP_DEFAULT_ENDPOINT: "open",
        APP_CAN_USE: "ada@example.com",
        ...internal?.env,
      },
      timeoutMs: 120_000,
    });
  const tokenOf = async (email?: string) => (await localUserToken(stateDir(), email ? { email } : {})).token;
  const bearer = (token: string) => async (url: string | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    headers.set("authorization", `Bearer ${token}`);
    return await fetch(url, { ...init, headers, redirect: "manual" });
  };
  const mcpClient = async (url: string, token: string) => {
    const client = new Client({ name: "mcp-app-proxy-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: bearer(token) }));
    return client;
  };
  const text = (r: unknown) => (r as { content: { text: string }[] }).content[0]?.text ?? "";
  /** Signs in at the stand-in's login page and through the proxy's callback; returns the session cookie. */
  const signIn = async (email: string): Promise<string> => {
    const login = await fetch(appUrl, { redirect: "manual" });
    const loginUrl = new URL(login.headers.get("location")!);
    const signed = await fetch(new URL("/login.html", loginUrl), {
      method: "POST",
      body: new URLSearchParams({
        email,
        name: email,
        redirect_uri: loginUrl.searchParams.get("redirect_uri")!,
        state: "/",
      }),
      redirect: "manual",
    });
    expect(signed.status).toBe(302);
    const callback = await fetch(signed.headers.get("location")!, { redirect: "manual" });
    expect(callback.status).toBe(302);
    return (callback.headers.get("set-cookie") ?? "").split(";")[0]!;
  };
  const upgradeStatus = (url: string, headers: Record<string, string>) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(url, { headers });
      ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
      ws.on("open", () => {
        ws.close();
        resolve(101);
      });
      ws.on("error", () => resolve(-1));
    });

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "mmdb-mcp-app-"));
    chmodSync(work, 0o755);
    internal = await freeInternalPorts();
    createFakeAppTree(path.join(work, "app"), { backendPort: internal.backendPort });
    const port = await freePort();
    const up = await cli(["--json", "local", "up", "--detach", "--no-build", "--port", String(port)]);
    expect(up.exitCode, up.stderr).toBe(0);
    appUrl = (JSON.parse(up.stdout) as { appUrl: string }).appUrl;
  }, 180_000);

  afterAll(async () => {
    await cli(["local", "down"]);
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it("/mcp is the default endpoint's: an MCP SDK client lists and calls its tools, no MetaMCP key needed", async () => {
    const token = await tokenOf();
    const client = await mcpClient(`${appUrl}/mcp`, token);
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name);
      expect(tools).toContain("echo");
      expect(text(await client.callTool({ name: "echo", arguments: { text: "via /mcp" } }))).toBe("via /mcp");
      const seen = JSON.parse(text(await client.callTool({ name: "whoami", arguments: {} })));
      expect(seen).toMatchObject({ authMethod: "none", "x-forwarded-email": "local-user@example.com" });
    } finally {
      await client.close();
    }
    // Another endpoint (one that needs a key) is not what /mcp serves.
    await expect(mcpClient(`${appUrl}/metamcp/demo/mcp`, token)).rejects.toThrow();
  });

  it("a person APP_CAN_USE names gets in, as the deployer does", async () => {
    await signIn("ada@example.com");
    const client = await mcpClient(`${appUrl}/mcp`, await tokenOf("ada@example.com"));
    try {
      const seen = JSON.parse(text(await client.callTool({ name: "whoami", arguments: {} })));
      expect(seen["x-forwarded-email"]).toBe("ada@example.com");
    } finally {
      await client.close();
    }
  });

  it("attacker: a signed-in person not in APP_CAN_USE / APP_CAN_MANAGE is refused on every route, token or cookie, HTTP or WebSocket", async () => {
    const cookie = await signIn("eve@example.com");
    const token = await tokenOf("eve@example.com");
    const initialize = {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-03-26",
          capabilities: {},
          clientInfo: { name: "eve", version: "1" },
        },
      }),
    };
    const routes: [string, RequestInit][] = [
      ["/", {}],
      ["/metamcp/health", {}],
      ["/metamcp/health/sessions", {}],
      ["/mcp", initialize],
      ["/metamcp/open/mcp", initialize],
      ["/metamcp/demo/mcp", initialize],
      ["/metamcp/open/sse", {}],
      ["/api/auth/get-session", {}],
      ["/trpc/frontend/me", {}],
    ];
    for (const [route, init] of routes) {
      for (const [how, headers] of [
        ["token", { authorization: `Bearer ${token}` }],
        ["cookie", { cookie }],
      ] as const) {
        const res = await fetch(`${appUrl}${route}`, {
          ...init,
          headers: { ...(init.headers as Record<string, string>), ...headers },
          redirect: "manual",
        });
        expect(res.status, `${route} with eve's ${how}`).toBe(403);
        expect(await res.text()).toContain("eve@example.com does not have permission to use app mcp-gw");
      }
    }
    // The MCP SDK client fails to connect at all.
    await expect(mcpClient(`${appUrl}/mcp`, token)).rejects.toThrow(/does not have permission|403/);
    // WebSockets, the app's and the log stream.
    const ws = appUrl.replace(/^http/, "ws");
    expect(await upgradeStatus(`${ws}/logz/stream`, { authorization: `Bearer ${token}` })).toBe(403);
    expect(await upgradeStatus(`${ws}/socket`, { authorization: `Bearer ${token}` })).toBe(403);
    // The deployer still reads the logs (the refusal is eve's, not the route's).
    expect(await upgradeStatus(`${ws}/logz/stream`, { authorization: `Bearer ${await tokenOf()}` })).toBe(
      101,
    );
    // No token at all: the login redirect, as before.
    expect((await fetch(`${appUrl}/mcp`, { redirect: "manual" })).status).toBe(302);
  });
});
