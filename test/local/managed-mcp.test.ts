import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ManagedMcp,
  registerManagedMcp,
  SEED_FUNCTION,
  SEED_SPACE,
  seedGrants,
  UNGRANTED_FUNCTION,
} from "../../src/local/platform/managed-mcp.js";
import { registerOidc } from "../../src/local/platform/oidc.js";
import { PlatformServer } from "../../src/local/platform/server.js";
import { TokenStore } from "../../src/local/platform/tokens.js";

/**
 * The stand-in workspace's managed MCP servers (docs/databricks-tools-cli.md, design §7), driven by a real MCP SDK
 * client over real HTTP: the checks in their order, the Databricks error shapes, Genie's ask/poll, and sessions
 * bound to the subject that opened them.
 */
const SP = "00000000-0000-4000-8000-0000000000a1";
const SP_SECRET = "sp-secret";
const ADA = "local-user@example.com";
const BOB = "bob@example.com";
/** A service principal nobody granted anything. */
const OTHER_SP = "00000000-0000-4000-8000-0000000000b2";

describe("the stand-in's managed MCP servers", () => {
  let workspace: PlatformServer;
  let mcp: ManagedMcp;
  let tokens: TokenStore;
  let clock: number;
  let offered: boolean;
  const clients: Client[] = [];
  const url = (p: string) => new URL(`${workspace.url}/api/2.0/mcp/${p}`);
  const bearer = (token: string) => async (u: string | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    headers.set("authorization", `Bearer ${token}`);
    return await fetch(u, { ...init, headers });
  };
  const connect = async (p: string, token: string) => {
    const client = new Client({ name: "managed-mcp-test", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(url(p), { fetch: bearer(token) }));
    clients.push(client);
    return client;
  };
  /** An MCP initialize as raw HTTP, to see the status and body a refusal has. */
  const initialize = (p: string, token: string | undefined, extra: Record<string, string> = {}) =>
    fetch(url(p), {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...extra,
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-03-26", capabilities: {}, clientInfo: { name: "t", version: "1" } },
      }),
    });
  const json = (r: unknown) => JSON.parse((r as { content: { text: string }[] }).content[0]!.text);
  /** The service principal's token as the app gets it: client_credentials at the stand-in's OIDC endpoint. */
  const m2mToken = async (scope?: string) => {
    const res = await fetch(`${workspace.url}/oidc/v1/token`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${SP}:${SP_SECRET}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ grant_type: "client_credentials", ...(scope ? { scope } : {}) }),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { access_token: string; scope: string }).access_token;
  };

  beforeEach(async () => {
    clock = 1_000_000;
    offered = true;
    tokens = new TokenStore(() => clock);
    workspace = new PlatformServer();
    registerOidc(workspace, { tokens, clients: new Map([[SP, SP_SECRET]]), tokenTtlSeconds: () => 3600 });
    mcp = registerManagedMcp(workspace, {
      tokens,
      // As `local` seeds them: the app and Ada may use both; Bob, as every user, the space and the schema only.
      grants: seedGrants(SP, ADA),
      offered: () => offered,
      genieDelayMs: () => 3000,
      regionsFor: (s) => (s === ADA ? ["EMEA"] : s === BOB ? ["AMER"] : "all"),
      now: () => clock,
    });
    await workspace.listen();
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => {});
    await mcp.close();
    await workspace.close();
  });

  it("calls a UC function with the app's all-apis token (one tool per function)", async () => {
    const client = await connect("functions/main/tools", await m2mToken());
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(["main__tools__region_of"]);
    const r = await client.callTool({ name: "main__tools__region_of", arguments: { country: "de" } });
    expect(json(r)).toEqual({ result: "EMEA" });
  });

  it("answers 401 without a valid token, in Databricks' error shape", async () => {
    for (const token of [undefined, "dapi-local-not-issued"]) {
      const res = await initialize("functions/main/tools", token);
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ error_code: "UNAUTHENTICATED", message: "Invalid access token." });
    }
    const expired = tokens.issue(SP, 1).token;
    expect((await initialize("functions/main/tools", expired)).status).toBe(200);
    clock += 1000;
    expect((await initialize("functions/main/tools", expired)).status).toBe(401);
  });

  it("refuses a token without all-apis or the kind's scope (403, naming the scope), and takes the narrow scope", async () => {
    const sqlOnly = await m2mToken("sql");
    for (const [p, scope] of [
      [`genie/${SEED_SPACE}`, "genie"],
      ["functions/main/tools", "unity-catalog"],
    ] as const) {
      const res = await initialize(p, sqlOnly);
      expect(res.status).toBe(403);
      expect(await res.json()).toEqual({
        error_code: "PERMISSION_DENIED",
        message: `Provided OAuth token does not have required scopes: ${scope}`,
      });
    }
    const genie = await connect(`genie/${SEED_SPACE}`, await m2mToken("genie"));
    expect((await genie.listTools()).tools.map((t) => t.name).sort()).toEqual([
      "genie_ask",
      "genie_poll_response",
    ]);
    expect((await initialize("sql", sqlOnly)).status).toBe(200);
  });

  it("refuses a subject without the grant: 403 PERMISSION_DENIED naming the privilege and the securable", async () => {
    const other = tokens.issue(OTHER_SP, 3600).token;
    const res = await initialize("functions/main/tools", other);
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({
      error_code: "PERMISSION_DENIED",
      message: "User does not have USE CATALOG on Catalog 'main'.",
    });
    // Bob reaches the schema's server but not the function: the call is refused, by HTTP, naming EXECUTE.
    const bob = await connect("functions/main/tools", tokens.issue(BOB, 3600).token);
    await expect(
      bob.callTool({ name: "main__tools__region_of", arguments: { country: "US" } }),
    ).rejects.toMatchObject({
      code: 403,
      message: expect.stringContaining(
        `"PERMISSION_DENIED","message":"User does not have EXECUTE on Routine or Model 'main.tools.region_of'."`,
      ),
    });
    const one = await initialize(
      `functions/${SEED_FUNCTION.replaceAll(".", "/")}`,
      tokens.issue(BOB, 3600).token,
    );
    expect(one.status).toBe(403);
    expect(((await one.json()) as { message: string }).message).toMatch(/EXECUTE on Routine or Model/);
    const space = await initialize(`genie/${SEED_SPACE}`, other);
    expect(space.status).toBe(403);
    expect(((await space.json()) as { message: string }).message).toBe(
      `User ${OTHER_SP} does not have CAN VIEW permission on Genie space '${SEED_SPACE}'.`,
    );
    // Ada, granted EXECUTE, calls it.
    const ada = await connect("functions/main/tools", tokens.issue(ADA, 3600).token);
    expect(
      json(await ada.callTool({ name: "main__tools__region_of", arguments: { country: "FR" } })),
    ).toEqual({
      result: "EMEA",
    });
  });

  it("answers an unknown space or schema 404 RESOURCE_DOES_NOT_EXIST", async () => {
    const sp = await m2mToken();
    const res = await initialize("genie/no-such-space", sp);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error_code: string }).error_code).toBe("RESOURCE_DOES_NOT_EXIST");
    expect((await initialize("functions/main/nothing", sp)).status).toBe(404);
  });

  it("says a workspace without managed MCP servers does not offer them (404 FEATURE_DISABLED, assumed shape)", async () => {
    offered = false;
    const res = await initialize("functions/main/tools", await m2mToken());
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error_code: string; message: string };
    expect(body.error_code).toBe("FEATURE_DISABLED");
    expect(body.message).toMatch(/not enabled for this workspace/);
  });

  it("Genie: ask gives ids IN_PROGRESS, poll stays IN_PROGRESS for the delay, then COMPLETED with the subject's rows", async () => {
    const ask = async (email: string) => {
      const client = await connect(`genie/${SEED_SPACE}`, tokens.issue(email, 3600).token);
      const asked = json(
        await client.callTool({ name: "genie_ask", arguments: { question: "revenue by country" } }),
      );
      expect(asked).toMatchObject({ status: "IN_PROGRESS" });
      expect(asked.conversation_id).toMatch(/^[0-9a-f-]{36}$/);
      return { client, asked };
    };
    const ada = await ask(ADA);
    const bob = await ask(BOB);
    const poll = (p: typeof ada) =>
      p.client
        .callTool({ name: "genie_poll_response", arguments: p.asked })
        .then((r) => json(r) as { status: string; rows?: [string, string, number][] });
    expect((await poll(ada)).status).toBe("IN_PROGRESS");
    clock += 2999;
    expect((await poll(ada)).status).toBe("IN_PROGRESS");
    clock += 1;
    const done = await poll(ada);
    expect(done.status).toBe("COMPLETED");
    expect(new Set(done.rows?.map((r) => r[0]))).toEqual(new Set(["EMEA"]));
    expect(new Set((await poll(bob)).rows?.map((r) => r[0]))).toEqual(new Set(["AMER"]));
    // Bob cannot poll Ada's conversation, even with its ids.
    const stolen = await bob.client.callTool({ name: "genie_poll_response", arguments: ada.asked });
    expect(stolen.isError).toBe(true);
  });

  it("binds a session to the subject that opened it: another token's subject on its Mcp-Session-Id gets 403", async () => {
    const opened = await initialize(`genie/${SEED_SPACE}`, tokens.issue(ADA, 3600).token);
    expect(opened.status).toBe(200);
    const sid = opened.headers.get("mcp-session-id")!;
    expect(mcp.sessions()).toEqual([{ id: sid, subject: ADA, path: `/api/2.0/mcp/genie/${SEED_SPACE}` }]);
    const listAs = (token: string, path = `genie/${SEED_SPACE}`) =>
      fetch(url(path), {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          authorization: `Bearer ${token}`,
          "mcp-session-id": sid,
          "mcp-protocol-version": "2025-03-26",
        },
        body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/list" }),
      });
    const bobs = await listAs(tokens.issue(BOB, 3600).token);
    expect(bobs.status).toBe(403);
    expect(await bobs.json()).toEqual({
      error_code: "PERMISSION_DENIED",
      message: "This MCP session was opened by another principal.",
    });
    // A fresh token of the same subject (a renewal) goes on with the session.
    const renewed = await listAs(tokens.issue(ADA, 3600).token);
    expect(renewed.status).toBe(200);
    expect(await renewed.text()).toContain("genie_ask");
    // The id on another server's path is no session there.
    expect((await listAs(await m2mToken(), "functions/main/tools")).status).toBe(404);
  });

  it("keeps working across token renewals: each request is judged by its own token", async () => {
    let current = tokens.issue(SP, 3600).token;
    const client = new Client({ name: "renewal", version: "1.0.0" });
    const seen = new Set<string>();
    await client.connect(
      new StreamableHTTPClientTransport(url("functions/main/tools"), {
        fetch: async (u, init) => {
          seen.add(current);
          return await bearer(current)(u, init);
        },
      }),
    );
    clients.push(client);
    for (let i = 0; i < 3; i++) {
      current = tokens.issue(SP, 3600).token;
      const r = await client.callTool({ name: "main__tools__region_of", arguments: { country: "JP" } });
      expect(json(r)).toEqual({ result: "APJ" });
    }
    expect(seen.size).toBe(4);
  });
  it("ends the oldest session beyond its limit: a long run does not grow without bound", async () => {
    await mcp.close();
    await workspace.close();
    workspace = new PlatformServer();
    mcp = registerManagedMcp(workspace, {
      tokens,
      grants: seedGrants(SP, ADA),
      offered: () => true,
      genieDelayMs: () => 0,
      maxSessions: 2,
    });
    await workspace.listen();
    const token = tokens.issue(SP, 3600).token;
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push((await initialize("functions/main/tools", token)).headers.get("mcp-session-id")!);
    expect(mcp.sessions().map((s) => s.id)).toEqual(ids.slice(1));
  });
  it("serves Genie One at /genie and a minimal SQL pair at /sql (execute, then poll)", async () => {
    const one = await connect("genie", await m2mToken("genie"));
    expect((await one.listTools()).tools.map((t) => t.name).sort()).toEqual([
      "genie_ask",
      "genie_poll_response",
    ]);
    const sql = await connect("sql", await m2mToken("sql"));
    const started = json(
      await sql.callTool({ name: "execute_sql_read_only", arguments: { query: "SELECT 1" } }),
    );
    expect(started.status).toEqual({ state: "PENDING" });
    const polled = json(await sql.callTool({ name: "poll_sql_result", arguments: started }));
    expect(polled.status).toEqual({ state: "SUCCEEDED" });
    expect(polled.result.data_array).toEqual([["1"]]);
  });
  it("refuses the app's service principal EXECUTE on the ungranted seed (main.finance.margin_of)", async () => {
    const client = await connect("functions/main/finance", await m2mToken());
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(["main__finance__margin_of"]);
    await expect(
      client.callTool({ name: "main__finance__margin_of", arguments: { product: "x" } }),
    ).rejects.toMatchObject({
      code: 403,
      message: expect.stringContaining(
        `User does not have EXECUTE on Routine or Model '${UNGRANTED_FUNCTION}'.`,
      ),
    });
  });
});
