import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_PROXY_LIMITS, LogBuffer, registerAppsProxy } from "../../src/local/platform/apps-proxy.js";
import { registerManagedMcp, SEED_SPACE, seedGrants } from "../../src/local/platform/managed-mcp.js";
import { onBehalfOfTokens, parseUserScopes } from "../../src/local/platform/obo-tokens.js";
import { PlatformServer } from "../../src/local/platform/server.js";
import { TokenStore } from "../../src/local/platform/tokens.js";
import {
  AuthCodes,
  BrowserSessions,
  DEFAULT_LOCAL_USER,
  LocalUsers,
} from "../../src/local/platform/users.js";

/**
 * User authorization in the stand-in (design §7): with the app's user scopes declared, the Apps proxy forwards
 * each person's own token, limited to those scopes, in X-Forwarded-Access-Token; without them, none; a copy a
 * client sent never gets through. Such a token reaches the managed servers as that person.
 */
const ADA = DEFAULT_LOCAL_USER.email;
const BOB = "bob@example.com";
const SP = "00000000-0000-4000-8000-0000000000a1";

describe("on-behalf-of tokens from the stand-in's Apps proxy", () => {
  let clock: number;
  let tokens: TokenStore;
  let users: LocalUsers;
  let app: Server;
  let appHost: PlatformServer;
  let workspace: PlatformServer;
  let seen: IncomingHttpHeaders[];
  let close: () => void;

  const start = async (scopes: string[]) => {
    appHost = new PlatformServer();
    const onBehalfOf = onBehalfOfTokens(
      tokens,
      scopes,
      () => 60,
      () => clock,
    );
    const proxy = registerAppsProxy(appHost, {
      tokens,
      target: `http://127.0.0.1:${(app.address() as AddressInfo).port}`,
      loginUrl: () => "http://127.0.0.1:1/login.html",
      logs: new LogBuffer(),
      users,
      codes: new AuthCodes(),
      sessions: new BrowserSessions(),
      workspaceId: "1",
      origins: () => ["http://127.0.0.1"],
      limits: () => DEFAULT_PROXY_LIMITS,
      accessTokenFor: (u) => (users.get(u.email) ? onBehalfOf(u.email) : undefined),
    });
    close = () => proxy.close();
    return await appHost.listen();
  };
  const call = async (proxyUrl: string, token: string, extra: Record<string, string> = {}) => {
    const res = await fetch(`${proxyUrl}/anything`, {
      headers: { authorization: `Bearer ${token}`, ...extra },
    });
    expect(res.status).toBe(200);
    await res.text();
    return seen.at(-1)!["x-forwarded-access-token"] as string | undefined;
  };

  beforeEach(async () => {
    clock = 1_000_000;
    tokens = new TokenStore(() => clock);
    users = new LocalUsers();
    users.add(BOB, "Bob");
    seen = [];
    app = createServer((req, res) => {
      seen.push(req.headers);
      res.end("ok");
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    workspace = new PlatformServer();
    close = () => {};
  });
  afterEach(async () => {
    close();
    await appHost?.close();
    await workspace.close();
    app.closeAllConnections();
    await new Promise((r) => app.close(r));
  });

  it("forwards none without declared scopes, and drops a copy the client sent", async () => {
    const proxy = await start([]);
    const t = tokens.issue(ADA, 3600).token;
    expect(await call(proxy, t)).toBeUndefined();
    expect(await call(proxy, t, { "x-forwarded-access-token": "forged" })).toBeUndefined();
  });

  it("forwards each person's own token with the app's scopes, reused for half its life, then a new one", async () => {
    const proxy = await start(["genie"]);
    const adaToken = tokens.issue(ADA, 3600).token;
    const first = await call(proxy, adaToken, { "x-forwarded-access-token": "forged" });
    expect(first).toMatch(/^dapi-local-/);
    expect(first).not.toBe(adaToken);
    expect(tokens.verify(first)).toMatchObject({ subject: ADA, scopes: ["genie"] });
    const bobs = await call(proxy, tokens.issue(BOB, 3600).token);
    expect(tokens.verify(bobs)?.subject).toBe(BOB);
    clock += 29_000;
    expect(await call(proxy, adaToken)).toBe(first);
    clock += 2_000;
    const renewed = await call(proxy, adaToken);
    expect(renewed).not.toBe(first);
    expect(tokens.verify(renewed)?.subject).toBe(ADA);
    // A service principal calling the app is no user: it has no token of its own to forward.
    expect(await call(proxy, tokens.issue(SP, 3600).token)).toBeUndefined();
  });

  it("the forwarded tokens reach Genie as each person (different rows) and only within their scopes", async () => {
    const proxy = await start(["genie"]);
    const mcp = registerManagedMcp(workspace, {
      tokens,
      grants: seedGrants(SP, ADA),
      offered: () => true,
      genieDelayMs: () => 0,
      regionsFor: (s) => (s === ADA ? ["EMEA"] : ["AMER"]),
      now: () => clock,
    });
    await workspace.listen();
    const regions = async (email: string) => {
      const obo = (await call(proxy, tokens.issue(email, 3600).token))!;
      const client = new Client({ name: "obo", version: "1.0.0" });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`${workspace.url}/api/2.0/mcp/genie/${SEED_SPACE}`), {
          requestInit: { headers: { authorization: `Bearer ${obo}` } },
        }),
      );
      try {
        const text = (r: unknown) => JSON.parse((r as { content: { text: string }[] }).content[0]!.text);
        const asked = text(await client.callTool({ name: "genie_ask", arguments: { question: "q" } }));
        const done = text(await client.callTool({ name: "genie_poll_response", arguments: asked }));
        return new Set((done.rows as string[][]).map((r) => r[0]));
      } finally {
        await client.close();
      }
    };
    expect(await regions(ADA)).toEqual(new Set(["EMEA"]));
    expect(await regions(BOB)).toEqual(new Set(["AMER"]));
    const obo = (await call(proxy, tokens.issue(ADA, 3600).token))!;
    const functions = await fetch(`${workspace.url}/api/2.0/mcp/functions/main/tools`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${obo}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(functions.status).toBe(403);
    expect(((await functions.json()) as { message: string }).message).toBe(
      "Provided OAuth token does not have required scopes: unity-catalog",
    );
    await mcp.close();
  });

  it("reads --user-scopes as comma-separated scope names", () => {
    expect(parseUserScopes("genie, unity-catalog")).toEqual(["genie", "unity-catalog"]);
    expect(parseUserScopes("genie;rm -rf")).toBeUndefined();
  });
});
