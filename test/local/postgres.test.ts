import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { type LocalPlatform, startPlatform } from "../../src/local/platform/index.js";
import { DatabaseCredentials } from "../../src/local/platform/lakebase-credentials.js";
import { databaseOfExistingState, freePort } from "../../src/local/postgres.js";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

describe("embedded PostgreSQL with a Lakebase-like role", () => {
  let db: LakebaseLikePostgres;
  beforeAll(async () => {
    db = await startLakebaseLikePostgres();
  });
  afterAll(async () => {
    await db?.stop();
  });

  it("refuses CREATE TABLE in public with Lakebase's error, allows CREATE SCHEMA", async () => {
    await db.setPassword("token-1", 60);
    const c = new pg.Client({ connectionString: db.roleUrl("token-1") });
    await c.connect();
    try {
      await expect(c.query("CREATE TABLE t (id int)")).rejects.toThrow("permission denied for schema public");
      await c.query("CREATE SCHEMA IF NOT EXISTS metamcp_app");
      await c.query("CREATE TABLE metamcp_app.t (id int)");
      const r = await c.query(
        "SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid WHERE relname = 't'",
      );
      expect(r.rows).toEqual([{ nspname: "metamcp_app" }]);
    } finally {
      await c.end();
    }
  });

  it("refuses a login once the password's validity has passed", async () => {
    await db.setPassword("token-2", -1);
    const c = new pg.Client({ connectionString: db.roleUrl("token-2") });
    await expect(c.connect()).rejects.toThrow(/password authentication failed/);
  });

  it("keeps a local state's data in the earlier default database; a new state uses the configured one", async () => {
    const pick = () => databaseOfExistingState(db.adminUrl(), { wanted: "metamcp", schema: "metamcp_app" });
    // db's database is databricks_postgres: no app schema there yet, so the configured database is used.
    const admin = new pg.Client({ connectionString: db.adminUrl(db.database) });
    await admin.connect();
    try {
      await admin.query("DROP SCHEMA IF EXISTS metamcp_app CASCADE");
      expect(await pick()).toBe("metamcp");
      // An earlier `local up` migrated into databricks_postgres: that state keeps its rows there.
      await admin.query("CREATE SCHEMA metamcp_app");
      expect(await pick()).toBe("databricks_postgres");
      // Once the configured database exists (a --fresh start, or set by hand), it wins.
      await admin.query("CREATE DATABASE metamcp");
      expect(await pick()).toBe("metamcp");
      await admin.query("DROP DATABASE metamcp");
    } finally {
      await admin.end();
    }
  });
});

describe("DatabaseCredentials: each credential until its own expiry", () => {
  it("honours every issued credential for its role until it expires, whatever was issued after", () => {
    let now = 1_000_000;
    const store = new DatabaseCredentials(() => now);
    const a = store.issue("sp", 3600);
    now += 1000;
    const b = store.issue("sp", 3600);
    expect(a.token).not.toBe(b.token);
    expect(store.honours("sp", a.token)).toBe(true);
    expect(store.honours("sp", b.token)).toBe(true);
    expect(store.honours("other-role", a.token)).toBe(false);
    expect(store.honours("sp", "lbc-never-issued")).toBe(false);
    now = a.expires.getTime();
    expect(store.honours("sp", a.token)).toBe(false);
    expect(store.honours("sp", b.token)).toBe(true);
    now = b.expires.getTime();
    expect(store.honours("sp", b.token)).toBe(false);
  });
});

/**
 * The stand-in's credentials API against the embedded PostgreSQL, as the runtime uses them: a service
 * principal token from OIDC, `POST /api/2.0/postgres/credentials`, then logins as the app's role.
 */
describe("the local stand-in's Lakebase credentials, at PostgreSQL's login", () => {
  const ROLE = "5f1d2c3b-cred-sp";
  const SP_SECRET = "sp-secret-cred-test";
  const TTL = 6;
  let db: LakebaseLikePostgres;
  let platform: LocalPlatform;
  let cwd: string;
  beforeAll(async () => {
    db = await startLakebaseLikePostgres({ role: ROLE });
    cwd = mkdtempSync(path.join(os.tmpdir(), "mmdb-cred-"));
    platform = await startPlatform({
      config: loadConfig({ cwd, env: { APP_NAME: "metamcp-cred", LAKEBASE_DATABASE: db.database } }),
      secrets: {
        betterAuthSecret: "a-real-looking-secret-0123456789",
        clientId: ROLE,
        clientSecret: SP_SECRET,
        pgSuperPassword: "",
        userClientId: "local-cli-cred",
        userClientSecret: "user-client-secret-cred",
      },
      postgres: db,
      proxyPort: await freePort(),
      appPort: await freePort(),
      credentialTtlSeconds: TTL,
      log: silentLogger,
    });
  });
  afterAll(async () => {
    await platform?.close();
    await db?.stop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  async function issue(): Promise<{ token: string; expires: number }> {
    const form = new URLSearchParams({
      grant_type: "client_credentials",
      client_id: ROLE,
      client_secret: SP_SECRET,
      scope: "all-apis",
    });
    const oauth = await fetch(`${platform.workspaceUrl}/oidc/v1/token`, { method: "POST", body: form });
    const { access_token } = (await oauth.json()) as { access_token: string };
    const res = await fetch(`${platform.workspaceUrl}/api/2.0/postgres/credentials`, {
      method: "POST",
      headers: { authorization: `Bearer ${access_token}`, "content-type": "application/json" },
      body: JSON.stringify({ endpoint: platform.appEnv.LAKEBASE_ENDPOINT }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token: string; expire_time: string };
    return { token: body.token, expires: Date.parse(body.expire_time) };
  }

  /** One login as the app's role; what PostgreSQL said, and when the attempt started and ended. */
  async function login(password: string, sql = "SELECT current_user AS u") {
    const started = Date.now();
    const c = new pg.Client({ host: db.host, port: db.port, database: db.database, user: ROLE, password });
    c.on("error", () => {});
    try {
      await c.connect();
      const r = await c.query(sql);
      return { ok: true as const, rows: r.rows, started, ended: Date.now() };
    } catch (err) {
      const e = err as { code?: string; message: string };
      return { ok: false as const, code: e.code, message: e.message, started, ended: Date.now() };
    } finally {
      await c.end().catch(() => {});
    }
  }

  it("two credentials issued in sequence both log in, each until its own expiry, then PostgreSQL refuses it", async () => {
    const a = await issue();
    expect(await login(a.token)).toMatchObject({ ok: true, rows: [{ u: ROLE }] });
    // B a clear two seconds after A, so their expiries are apart.
    await waitFor(() => (Date.now() >= a.expires - TTL * 1000 + 2000 ? true : undefined), {
      timeoutMs: 10_000,
      what: "two seconds to pass",
      intervalMs: 50,
    });
    const b = await issue();
    expect(b.expires - a.expires).toBeGreaterThanOrEqual(2000);
    // The earlier credential still logs in after a later one was issued (one role password could not).
    expect(await login(a.token)).toMatchObject({ ok: true, rows: [{ u: ROLE }] });
    expect(await login(b.token)).toMatchObject({ ok: true, rows: [{ u: ROLE }] });

    // Then each until its own expiry: a login that worked was checked before that credential's expiry,
    // a refused one after it, and the refusal is PostgreSQL's own.
    const seen = {
      a: [] as Awaited<ReturnType<typeof login>>[],
      b: [] as Awaited<ReturnType<typeof login>>[],
    };
    await waitFor(
      async () => {
        seen.a.push(await login(a.token));
        seen.b.push(await login(b.token));
        return seen.b.at(-1)?.ok === false ? true : undefined;
      },
      { timeoutMs: 60_000, what: "both credentials to expire", intervalMs: 50 },
    );
    for (const [key, c] of [
      ["a", a],
      ["b", b],
    ] as const) {
      for (const r of seen[key]) {
        if (r.ok) expect(r.started, `${key} logged in after its expiry`).toBeLessThan(c.expires);
        else {
          expect(r.ended, `${key} refused before its expiry`).toBeGreaterThanOrEqual(c.expires);
          expect(r).toMatchObject({
            code: "28000",
            message: `RADIUS authentication failed for user "${ROLE}"`,
          });
        }
      }
    }
    // A was refused while B still logged in: the renewal window the runtime relies on.
    const aRefusedAt = seen.a.findIndex((r) => !r.ok);
    expect(aRefusedAt).toBeGreaterThanOrEqual(0);
    expect(seen.b.slice(aRefusedAt).some((r) => r.ok)).toBe(true);
  });

  it("refuses a credential it never issued, and the superuser still logs in with its own password", async () => {
    expect(await login("lbc-00000000-0000-4000-8000-000000000000")).toMatchObject({
      ok: false,
      code: "28000",
    });
    const admin = new pg.Client({ connectionString: db.adminUrl(db.database) });
    await admin.connect();
    await admin.end();
  });

  it("an issued credential still gets Lakebase's permissions: no CREATE in public, CREATE SCHEMA allowed", async () => {
    const { token } = await issue();
    expect(await login(token, "CREATE TABLE t_in_public (id int)")).toMatchObject({
      ok: false,
      message: "permission denied for schema public",
    });
    expect(await login(token, "CREATE SCHEMA IF NOT EXISTS cred_schema")).toMatchObject({ ok: true });
  });
});
