import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { localPaths, readRunState } from "../../src/local/state.js";
import { ENDPOINT_IDENTITY_ROUTE } from "../../src/patches/endpoint-identity-module.js";
import { FAKE_ENDPOINT_ROWS, FAKE_SCHEMA } from "../support/fake-app-endpoints.js";
import { FAKE_METAMCP_API_KEY } from "../support/fake-app-tree.js";
import {
  bearerFetch as fetchWith,
  ownerDatabase,
  rawInitialize,
  toolText as text,
  useLocalStack,
} from "../support/local-rig.js";

/**
 * MCP clients with only a Databricks token (docs/identity.md, "MCP clients"): a real MCP SDK client through
 * the local Apps proxy and our router to the fake tree's MCP server, whose key check runs OUR module exactly
 * as the endpoint-identity patch writes it, against the real PostgreSQL (our table, upstream's endpoints and
 * users; users created through real better-auth with our identity module).
 */
const ALICE = "local-user@example.com"; // the stand-in's default user
const BOB = "bob@example.com";

describe("endpoints that accept the Databricks identity (local stand-in, real MCP client)", () => {
  const stack = useLocalStack("eid");
  let appUrl: string;
  let db: pg.Client;
  const stateDir = () => stack.stateDir;
  const tokenOf = stack.tokenOf;
  const connect = async (endpoint: string, fetchFn: ReturnType<typeof fetchWith>) => {
    const client = new Client({ name: "endpoint-identity-test", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${appUrl}/metamcp/${endpoint}/mcp`), { fetch: fetchFn }),
    );
    return client;
  };
  const initialize = (endpoint: string, fetchFn: ReturnType<typeof fetchWith>) =>
    rawInitialize(`${appUrl}/metamcp/${endpoint}/mcp`, fetchFn);
  const settings = (endpoint: string, token: string, accept?: boolean) =>
    fetch(`${appUrl}${ENDPOINT_IDENTITY_ROUTE}/${endpoint}`, {
      method: accept === undefined ? "GET" : "PUT",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(accept === undefined ? {} : { body: JSON.stringify({ acceptIdentity: accept }) }),
      redirect: "manual",
    });
  const userId = async (email: string) =>
    (await db.query<{ id: string }>(`SELECT id FROM "${FAKE_SCHEMA}".users WHERE email = $1`, [email]))
      .rows[0]?.id;

  beforeAll(async () => {
    ({ appUrl } = await stack.up());
    // Bob signs in at the stand-in's login page once, as a person would: then he is a workspace user.
    await stack.signIn(BOB, "Bob");
    // The test looks into the database as its owner would (the stand-in's superuser).
    db = await ownerDatabase(stack.stateDir);
  });

  afterAll(async () => {
    await db?.end().catch(() => {});
  });

  it("an existing endpoint is unchanged after the upgrade: its explicit row says keys, a token alone is refused", async () => {
    const rows = await db.query<{ endpoint_uuid: string; accept_identity: boolean; updated_by: string }>(
      `SELECT endpoint_uuid, accept_identity, updated_by FROM "${FAKE_SCHEMA}".databricks_endpoint_identity ORDER BY endpoint_uuid`,
    );
    expect(rows.rows).toEqual(
      FAKE_ENDPOINT_ROWS.map((e) => ({
        endpoint_uuid: e.uuid,
        accept_identity: false,
        updated_by: "upgrade",
      })).sort((a, b) => a.endpoint_uuid.localeCompare(b.endpoint_uuid)),
    );
    const token = await tokenOf();
    const none = await initialize("demo", fetchWith(token));
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: string }).error).toBe("authentication_required");
    const got = await settings("demo", token);
    expect(got.status).toBe(200);
    expect(await got.json()).toMatchObject({
      endpoint: "demo",
      acceptIdentity: false,
      explicit: true,
      default: true,
    });
    // The key still works as before.
    const client = await connect("demo", fetchWith(token, { "x-api-key": FAKE_METAMCP_API_KEY }));
    try {
      expect(text(await client.callTool({ name: "echo", arguments: { text: "key" } }))).toBe("key");
    } finally {
      await client.close();
    }
  });

  it("turned on: the Databricks token alone lists and calls tools, as the identity's MetaMCP user; turned off: the key is needed again", async () => {
    const token = await tokenOf();
    const on = await settings("demo", token, true);
    expect(on.status).toBe(200);
    expect(await on.json()).toMatchObject({ endpoint: "demo", acceptIdentity: true });
    const client = await connect("demo", fetchWith(token));
    try {
      expect((await client.listTools()).tools.map((t) => t.name).sort()).toEqual(["echo", "sleep", "whoami"]);
      expect(text(await client.callTool({ name: "echo", arguments: { text: "no key" } }))).toBe("no key");
      const seen = JSON.parse(text(await client.callTool({ name: "whoami", arguments: {} })));
      expect(seen["x-api-key"]).toBe("absent");
      expect(seen.authorization).toBe("absent"); // the Databricks token never reaches MetaMCP
      expect(seen.authMethod).toBe("api_key"); // the request fields upstream sets for a user's key
      expect(seen.databricksIdentity).toBe(ALICE);
      expect(seen.apiKeyUserId).toBe(await userId(ALICE));
      expect(seen.apiKeyUserId).toBeTruthy();
    } finally {
      await client.close();
    }
    // A client that sends a key is checked by upstream as before: the identity never overrides a key.
    const wrongKey = await initialize("demo", fetchWith(token, { "x-api-key": "sk_mt_wrong" }));
    expect(wrongKey.status).toBe(401);
    expect(((await wrongKey.json()) as { error: string }).error).toBe("invalid_api_key");
    const keyed = await connect("demo", fetchWith(token, { "x-api-key": FAKE_METAMCP_API_KEY }));
    try {
      const seen = JSON.parse(text(await keyed.callTool({ name: "whoami", arguments: {} })));
      expect(seen["x-api-key"]).toBe("metamcp-key");
      expect(seen.databricksIdentity).toBeNull();
    } finally {
      await keyed.close();
    }
    const row = await db.query(
      `SELECT accept_identity, updated_by FROM "${FAKE_SCHEMA}".databricks_endpoint_identity WHERE endpoint_uuid = $1`,
      [FAKE_ENDPOINT_ROWS[0].uuid],
    );
    expect(row.rows[0]).toEqual({ accept_identity: true, updated_by: ALICE });

    expect((await settings("demo", token, false)).status).toBe(200);
    const refused = await initialize("demo", fetchWith(token));
    expect(refused.status).toBe(401);
    const withKey = await connect("demo", fetchWith(token, { "x-api-key": FAKE_METAMCP_API_KEY }));
    await withKey.close();
  });

  it("a private endpoint of Alice: her token works, Bob's identity gets upstream's 403; Bob can't change it either", async () => {
    const alice = await tokenOf();
    const bob = await tokenOf(BOB);
    // Alice's MetaMCP user exists once she came through the proxy; her new endpoint has no row (default: on).
    expect((await settings("demo", alice)).status).toBe(200);
    await db.query(
      `INSERT INTO "${FAKE_SCHEMA}".endpoints (name, enable_api_key_auth, user_id) VALUES ('alices', true, $1)`,
      [await userId(ALICE)],
    );
    const mine = await connect("alices", fetchWith(alice));
    try {
      expect(text(await mine.callTool({ name: "echo", arguments: { text: "mine" } }))).toBe("mine");
    } finally {
      await mine.close();
    }
    const denied = await initialize("alices", fetchWith(bob));
    expect(denied.status).toBe(403);
    const body = (await denied.json()) as Record<string, string>;
    expect(body).toMatchObject({
      error: "Access denied",
      message: "You can only access endpoints you own or public endpoints.",
    });
    expect(body.timestamp).toMatch(/^\d{4}-/);
    expect((await settings("alices", bob)).status).toBe(403);
    expect((await settings("alices", bob, false)).status).toBe(403);
    // Bob's identity became a MetaMCP user of his own, distinct from Alice's.
    expect(await userId(BOB)).toBeTruthy();
    expect(await userId(BOB)).not.toBe(await userId(ALICE));
    // A new endpoint with no choice follows the default (on): the owner's token alone works.
    const state = await (await settings("alices", alice)).json();
    expect(state).toMatchObject({ acceptIdentity: true, explicit: false, public: false });
  });

  it("forged identity headers from the client are ignored: X-Forwarded-Email and x-metamcp-identity-secret", async () => {
    const bob = await tokenOf(BOB);
    // Bob claims to be Alice on her private endpoint: the proxy sets the email from his token, the router
    // drops his secret header and stamps its own.
    const forged = await initialize(
      "alices",
      fetchWith(bob, {
        "x-forwarded-email": ALICE,
        "x-forwarded-user": "1000@local",
        "x-metamcp-identity-secret": "0".repeat(64),
      }),
    );
    expect(forged.status).toBe(403);
    // Straight to MetaMCP's backend port (as a stdio MCP server in the same container could): no router,
    // no secret it knows, so the claimed identity means nothing and the key is asked for.
    const direct = await fetch(`http://127.0.0.1:${stack.internal.backendPort}/metamcp/alices/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "x-forwarded-email": ALICE,
        "x-metamcp-identity-secret": "0".repeat(64),
      },
      body: "{}",
    });
    expect(direct.status).toBe(401);
    expect(((await direct.json()) as { error: string }).error).toBe("authentication_required");
    const directSettings = await fetch(
      `http://127.0.0.1:${stack.internal.backendPort}${ENDPOINT_IDENTITY_ROUTE}/alices`,
      {
        method: "PUT",
        headers: { "x-forwarded-email": ALICE, "content-type": "application/json" },
        body: JSON.stringify({ acceptIdentity: false }),
      },
    );
    expect(directSettings.status).toBe(401);
    // Straight to the APP port, around the stand-in proxy (on Databricks: any process the app runs, at
    // 0.0.0.0:$DATABRICKS_APP_PORT): the router sees a caller on this host, so the claimed identity is
    // dropped before it could be stamped, and Alice's identity-accepting endpoint asks for a key.
    const appPort = readRunState(localPaths(stateDir()))!.ports.app;
    const aroundProxy = await fetch(`http://127.0.0.1:${appPort}/metamcp/alices/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "x-forwarded-email": ALICE,
        "x-forwarded-user": "1000@local",
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-03-26", capabilities: {}, clientInfo: { name: "t", version: "1" } },
      }),
    });
    expect(aroundProxy.status).toBe(401);
    const aroundProxySettings = await fetch(`http://127.0.0.1:${appPort}${ENDPOINT_IDENTITY_ROUTE}/alices`, {
      method: "PUT",
      headers: { "x-forwarded-email": ALICE, "content-type": "application/json" },
      body: JSON.stringify({ acceptIdentity: false }),
    });
    expect([401, 403]).toContain(aroundProxySettings.status);
    expect(await (await settings("alices", await tokenOf(ALICE))).json()).toMatchObject({
      acceptIdentity: true,
    });
  });

  it("an endpoint with no authentication stays open; an unknown endpoint is upstream's 404", async () => {
    const token = await tokenOf();
    const open = await connect("open", fetchWith(token));
    try {
      const seen = JSON.parse(text(await open.callTool({ name: "whoami", arguments: {} })));
      expect(seen.authMethod).toBe("none");
    } finally {
      await open.close();
    }
    expect((await settings("nope", token)).status).toBe(404);
    expect((await initialize("nope", fetchWith(token))).status).toBe(404);
  });
});
