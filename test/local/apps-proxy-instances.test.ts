import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { type LocalPlatform, startPlatform } from "../../src/local/platform/index.js";
import { freePort } from "../../src/local/postgres.js";
import { silentLogger } from "../../src/log/logger.js";
import type { Router } from "../../src/runtime/router.js";
import { SessionContinuity } from "../../src/runtime/session-continuity.js";
import { ensureSessionTable, SessionStore } from "../../src/runtime/session-store.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";
import {
  ADA,
  SECRET,
  startRouter,
  startUpstreamShapedBackend,
  text,
  type UpstreamShape,
} from "../support/upstream-shaped-backend.js";

/**
 * The stand-in Apps proxy in front of several app instances (docs/scaling.md): per person, best-effort,
 * like the platform's session affinity (`sticky`), or request by request (`spread`); instances out of
 * rotation get nothing. The instances are the app's router with session continuity, each with its own
 * MetaMCP-shaped backend, on one embedded PostgreSQL; the client is the real MCP SDK's, through the proxy.
 */
let db: LakebaseLikePostgres;
let platform: LocalPlatform;
const instances: { router: Router; backend: UpstreamShape; store: SessionStore; port: number }[] = [];
const PASSWORD = "apps-proxy-instances";

beforeAll(async () => {
  db = await startLakebaseLikePostgres({ role: "6c0e1f9a-app-sp" });
  await db.setPassword(PASSWORD, 3600);
  const c = new pg.Client({ connectionString: db.roleUrl(PASSWORD) });
  await c.connect();
  await c.query("CREATE SCHEMA IF NOT EXISTS metamcp_app");
  await ensureSessionTable(c, "metamcp_app");
  await c.end();
  const config = loadConfig({
    cwd: "/work/project",
    env: { APP_NAME: "metamcp-test", LAKEBASE_DATABASE: db.database },
    dotenvPath: "/nonexistent",
  });
  const proxyPort = await freePort();
  platform = await startPlatform({
    config,
    secrets: {
      betterAuthSecret: "a-real-looking-secret-0123456789",
      clientId: db.role,
      clientSecret: "sp-secret-xyz",
      pgSuperPassword: "",
      userClientId: "local-cli-test",
      userClientSecret: "user-client-secret-test",
    },
    postgres: db,
    proxyPort,
    appPort: await freePort("127.0.0.1", [proxyPort]),
    credentialTtlSeconds: 3600,
    log: silentLogger,
  });
  for (let i = 0; i < 2; i++) {
    const backend = await startUpstreamShapedBackend();
    const store = new SessionStore({
      // The stand-in checks the role's logins from now on: its credentials are the password (as on Lakebase).
      connection: { connectionString: db.roleUrl(platform.issueDatabaseCredential(3600).token) },
      schema: "metamcp_app",
      idleMs: 600_000,
    });
    const continuity = new SessionContinuity({ store, backendPort: backend.port, identitySecret: SECRET });
    const { router } = await startRouter(backend.port, {
      continuity,
      trustedProxyAddresses: [platform.appEnv.METAMCP_TRUSTED_PROXY_ADDRESSES!],
    });
    const address = router.server.address();
    instances.push({
      router,
      backend,
      store,
      port: typeof address === "object" && address ? address.port : 0,
    });
  }
  platform.rotation.ports = instances.map((i) => i.port);
}, 60_000);

afterAll(async () => {
  for (const i of instances) {
    await i.router.close(100);
    await i.store.close();
    await i.backend.kill();
  }
  await platform?.close();
  await db?.stop();
});

/** Which instance answered: each backend counts what it saw. */
const seenBy = () => instances.map((i) => i.backend.seen.length);

async function connectThroughProxy(email: string) {
  const { token } = platform.issueUserToken(email);
  const client = new Client({ name: `client-of-${email}`, version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(
    new URL(`${platform.appUrl}/metamcp/${ADA.endpoint}/mcp`),
    {
      requestInit: { headers: { authorization: `Bearer ${token}`, "x-api-key": ADA.key } },
    },
  );
  await client.connect(transport);
  return { client, transport };
}

describe("the stand-in Apps proxy in front of two instances", () => {
  it("sticky (the platform's affinity): one person's requests all reach one instance", async () => {
    platform.rotation.routing = "sticky";
    const before = seenBy();
    const ada = await connectThroughProxy("ada@example.com");
    for (let i = 0; i < 5; i++)
      expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    const hits = seenBy().map((n, i) => n - before[i]!);
    expect(hits.filter((n) => n > 0)).toHaveLength(1);
    await ada.client.close();
    // Per person: among several people, both instances serve someone.
    const where = new Set<number>();
    for (let p = 0; p < 8; p++) {
      const b = seenBy();
      const res = await fetch(`${platform.appUrl}/metamcp/health`, {
        headers: { authorization: `Bearer ${platform.issueUserToken(`person${p}@example.com`).token}` },
      });
      await res.text();
      where.add(seenBy().findIndex((n, i) => n > b[i]!));
    }
    expect(where.size).toBe(2);
  });

  it("spread: consecutive requests of one session go to both instances, and every call succeeds", async () => {
    platform.rotation.routing = "spread";
    const before = seenBy();
    const ada = await connectThroughProxy("ada@example.com");
    for (let i = 0; i < 8; i++)
      expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    const hits = seenBy().map((n, i) => n - before[i]!);
    expect(hits.every((n) => n >= 4)).toBe(true);
    await ada.client.close();
  });

  it("out of rotation: an instance gets nothing; none in rotation: 503", async () => {
    platform.rotation.routing = "spread";
    const ada = await connectThroughProxy("ada@example.com");
    platform.rotation.ports = [instances[1]!.port];
    const before = seenBy();
    for (let i = 0; i < 4; i++)
      expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    expect(seenBy()[0]).toBe(before[0]);
    platform.rotation.ports = [];
    const res = await fetch(`${platform.appUrl}/metamcp/health`, {
      headers: { authorization: `Bearer ${platform.issueUserToken("ada@example.com").token}` },
    });
    expect(res.status).toBe(503);
    platform.rotation.ports = instances.map((i) => i.port);
    await ada.client.close();
  });
});
