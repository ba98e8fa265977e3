import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { pollHealth } from "../../src/databricks/health.js";
import { freePort } from "../../src/local/postgres.js";
import { waitFor } from "../../src/retry.js";
import { CREDENTIAL_DIR_PREFIX } from "../../src/runtime/credentials.js";
import { listeningPorts, useRuntimeRig } from "../support/runtime-rig.js";
import { UPSTREAM_PORTS } from "../support/upstream-port-holders.js";
import { type RestartablePostgres, startRestartablePostgres, WorkspaceGate } from "./fault-rig.js";

/**
 * The runtime bundle (`node runtime/start.mjs`) under real faults: signals sent at each moment of startup,
 * PostgreSQL stopped and started again, the Databricks stand-in hanging or failing its calls, credentials
 * expiring, a SIGKILL leaving files behind. MetaMCP's internal ports are free ones (test/support/runtime-rig.ts).
 */
let db: RestartablePostgres;
let gate: WorkspaceGate;
const rig = useRuntimeRig(async () => {
  db = await startRestartablePostgres({ database: "databricks_postgres", role: "7d1e2f3a-app-sp" });
  return {
    postgres: db,
    clientSecret: "sp-secret-faults",
    credentialTtlSeconds: 10,
    name: "faults",
    env: () => ({ DATABRICKS_HOST: gate.url }),
  };
});
const { waitLine, waitReady, exitWithin, expectNoSurvivors } = rig;
const startRuntime = (overrides: Record<string, string | undefined> = {}, tmp?: string) =>
  rig.start(overrides, { tmp });
const blockers: Server[] = [];
/** The migration lock the runtime takes (database.ts MIGRATION_LOCK), held by the test to pause it there. */
const MIGRATION_LOCK = 0x6d6d6462;

function credentialDirs(tmp: string): string[] {
  return readdirSync(tmp).filter((n) => n.startsWith(CREDENTIAL_DIR_PREFIX));
}

async function appHealth(): Promise<{ status: number; body: string }> {
  const res = await rig.appGet("/metamcp/health");
  return { status: res.status, body: await res.text() };
}

describe("the runtime under faults", () => {
  beforeAll(async () => {
    gate = new WorkspaceGate(rig.platform.workspaceUrl);
    await gate.listen();
  });

  afterEach(async () => {
    gate.rules.clear();
    gate.hits.clear();
    await db.up();
    for (const b of blockers.splice(0)) {
      b.closeAllConnections();
      await new Promise<void>((res) => b.close(() => res()));
    }
  });

  afterAll(async () => {
    await gate?.close();
  });

  describe("SIGTERM at any moment of startup: stops at once, launches nothing after, leaves no process", () => {
    it("during the public-URL lookup (the Apps API not answering)", async () => {
      gate.rules.set("/api/2.0/apps/", { kind: "hang" });
      const app = startRuntime({ METAMCP_APP_URL: undefined });
      await waitLine(app, /public URL…/);
      await waitFor(
        () => (gate.hits.get(`/api/2.0/apps/${rig.platform.appEnv.DATABRICKS_APP_NAME}`) ? true : undefined),
        {
          timeoutMs: 20_000,
          what: "the lookup to reach the Apps API",
        },
      );
      app.child.kill("SIGTERM");
      // The lookup's own timeout is 15 s: a stop must not wait for it.
      expect(await exitWithin(app, 10_000)).toBe(0);
      await expectNoSurvivors(app);
      expect(credentialDirs(app.tmp)).toEqual([]);
    });

    it("SIGHUP (a closed terminal) the same way, with nothing left behind", async () => {
      gate.rules.set("/api/2.0/postgres/credentials", { kind: "fail" });
      const app = startRuntime();
      await waitLine(app, /database credential: .*retrying in/);
      app.child.kill("SIGHUP");
      expect(await exitWithin(app, 20_000)).toBe(0);
      await expectNoSurvivors(app);
      expect(credentialDirs(app.tmp)).toEqual([]);
    });

    it("during credential retries (the credential API failing)", async () => {
      gate.rules.set("/api/2.0/postgres/credentials", { kind: "fail" });
      const app = startRuntime();
      await waitLine(app, /database credential: .*retrying in/);
      app.child.kill("SIGTERM");
      // Today's retry deadline is 60 s.
      expect(await exitWithin(app, 20_000)).toBe(0);
      await expectNoSurvivors(app);
      expect(credentialDirs(app.tmp)).toEqual([]);
    });

    it("during database-wait retries (nothing listening on PGPORT)", async () => {
      const app = startRuntime({ PGPORT: String(await freePort()) });
      await waitLine(app, /database not reachable yet/);
      app.child.kill("SIGINT");
      // METAMCP_DB_WAIT_SECONDS defaults to 120.
      expect(await exitWithin(app, 20_000)).toBe(0);
      await expectNoSurvivors(app);
    });

    it("during migrations (waiting for the migration lock): nothing is launched after the stop", async () => {
      const holder = new pg.Client({ connectionString: db.adminUrl(db.database) });
      holder.on("error", () => {});
      await holder.connect();
      try {
        await holder.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
        const app = startRuntime();
        await waitLine(app, /\[start\] info: migrations…/);
        app.child.kill("SIGTERM");
        // The lock is still held: the runtime must not wait for it.
        expect(await exitWithin(app, 20_000)).toBe(0);
        await expectNoSurvivors(app);
        expect(app.lines.filter((l) => /^\[(backend|frontend)\]/.test(l))).toEqual([]);
        expect(app.lines.join("\n")).not.toMatch(/MetaMCP servers/);
        expect(credentialDirs(app.tmp)).toEqual([]);
      } finally {
        await holder.end().catch(() => {});
      }
    });

    it("while MetaMCP's servers start (the backend cannot come up)", async () => {
      // Something else holds the backend's port: the backend keeps failing, the runtime keeps waiting.
      const squatter = createServer((_req, res) => {
        res.writeHead(503);
        res.end();
      });
      blockers.push(squatter);
      await new Promise<void>((r) => squatter.listen(rig.internal.backendPort, "127.0.0.1", () => r()));
      const app = startRuntime();
      await waitLine(app, /\[start\] info: MetaMCP servers…/);
      await waitLine(app, /backend exited unexpectedly/);
      app.child.kill("SIGTERM");
      expect(await exitWithin(app, 20_000)).toBe(0);
      await expectNoSurvivors(app);
      expect(credentialDirs(app.tmp)).toEqual([]);
    });
  });

  it("PostgreSQL restarting during migrations: a clear message, a reconnect, then serving; never a raw stack", async () => {
    const holder = new pg.Client({ connectionString: db.adminUrl(db.database) });
    holder.on("error", () => {});
    await holder.connect();
    await holder.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
    const app = startRuntime();
    await waitLine(app, /\[start\] info: migrations…/);
    await db.down(); // the runtime's connection (waiting for the lock) is terminated by the server
    await holder.end().catch(() => {});
    await waitLine(app, /lost the database connection during migrations .*reconnecting/);
    await db.up();
    await waitReady(app);
    expect((await appHealth()).status).toBe(200);
    const out = app.lines.join("\n");
    expect(out).not.toMatch(/\n\s+at /);
    expect(out).not.toMatch(/internal error/);
  });

  it("an expired credential that cannot be renewed: an error saying what to check, health 503 with the reason, then recovery", async () => {
    const app = startRuntime();
    await waitReady(app);
    const h0 = await appHealth();
    expect(h0.status, `${h0.body}\n${app.lines.join("\n")}`).toBe(200);
    gate.rules.set("/api/2.0/postgres/credentials", { kind: "fail" });
    const unhealthy = await waitFor(
      async () => {
        const h = await appHealth();
        return h.status === 503 ? h : undefined;
      },
      { timeoutMs: 60_000, what: "health to answer 503 once the credential expired" },
    );
    expect(JSON.parse(unhealthy.body)).toMatchObject({
      status: "unhealthy",
      reason: expect.stringMatching(/the database credential expired at .* could not be renewed/),
    });
    await waitLine(
      app,
      /\[credential\] error: the Lakebase credential expired at .* renewing it keeps failing .*Check that the app's service principal/,
    );
    // app-health shows the reason.
    const polled = await pollHealth({
      appUrl: `http://127.0.0.1:${rig.appPort}`,
      token: async () => "unused-by-the-router",
      timeoutMs: 1000,
      intervalMs: 500,
    });
    expect(polled.healthy).toBe(false);
    expect(polled.problem).toMatch(/^HTTP 503: the database credential expired/);

    gate.rules.clear();
    await waitFor(async () => ((await appHealth()).status === 200 ? true : undefined), {
      timeoutMs: 60_000,
      what: "health to recover once renewal works again",
    });
    await waitLine(app, /renewed .*after it had expired: new database connections work again/);
    expect(app.child.exitCode).toBeNull();
  });

  it("the database down: health 503 naming it, app-health shows it; back up: healthy again with no restart", async () => {
    const app = startRuntime();
    await waitReady(app);
    await db.down();
    const down = await waitFor(
      async () => {
        const h = await appHealth();
        return h.status === 503 ? h : undefined;
      },
      { timeoutMs: 30_000, what: "health to answer 503 while the database is down" },
    );
    expect(JSON.parse(down.body).reason).toMatch(/cannot open a database connection: .*ECONNREFUSED/);
    const polled = await pollHealth({
      appUrl: `http://127.0.0.1:${rig.appPort}`,
      token: async () => "unused-by-the-router",
      timeoutMs: 1000,
      intervalMs: 500,
    });
    expect(polled.problem).toMatch(/^HTTP 503: cannot open a database connection/);
    await db.up();
    await waitFor(async () => ((await appHealth()).status === 200 ? true : undefined), {
      timeoutMs: 60_000,
      what: "health to recover once the database is back",
    });
    await waitLine(app, /\[health\] success: healthy again/);
    expect(app.child.exitCode).toBeNull();
  });

  it("a credential that arrives already expired is renewed with a growing wait, not every 0.5 s", async () => {
    gate.rules.set("/api/2.0/postgres/credentials", { kind: "expiry", value: "2020-01-01T00:00:00Z" });
    const app = startRuntime();
    await waitReady(app);
    await waitLine(app, /already past on this clock .*trying again in 4 s/, 60_000);
    const before = gate.hits.get("/api/2.0/postgres/credentials") ?? 0;
    expect(before).toBeLessThan(10);
  });

  it("a credential whose expiry is not a time: a Databricks-side error, exit 4 (not 'Invalid time value')", async () => {
    gate.rules.set("/api/2.0/postgres/credentials", { kind: "expiry", value: "soon-ish" });
    const app = startRuntime();
    expect(await exitWithin(app, 60_000)).toBe(4);
    const out = app.lines.join("\n");
    expect(out).toMatch(/expire_time is "soon-ish", not a time/);
    expect(out).not.toMatch(/Invalid time value/);
    expect(credentialDirs(app.tmp)).toEqual([]);
  });

  it("a SIGKILLed run's credential file is removed at the next start; a stop removes its own", async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), "mmdb-rt-tmp-"));
    const first = startRuntime({}, tmp);
    await waitReady(first);
    const [left] = credentialDirs(tmp);
    expect(left).toBeDefined();
    expect(readFileSync(path.join(tmp, left!, "pgpassword"), "utf8")).toMatch(/^lbc-/);
    process.kill(-first.child.pid!, "SIGKILL"); // the runtime and its children: nothing can run
    await first.exited;
    await expectNoSurvivors(first);
    expect(existsSync(path.join(tmp, left!))).toBe(true);

    const second = startRuntime({}, tmp);
    await waitReady(second);
    expect(second.lines.join("\n")).toContain(
      `removed a credential folder an earlier run left behind: ${path.join(tmp, left!)}`,
    );
    expect(existsSync(path.join(tmp, left!))).toBe(false);
    expect(credentialDirs(tmp)).toHaveLength(1);
    second.child.kill("SIGTERM");
    expect(await exitWithin(second, 20_000)).toBe(0);
    expect(credentialDirs(tmp)).toEqual([]);
  });

  it("a fatal error (the database staying down) exits 4 as documented and removes the credential file", async () => {
    const app = startRuntime({ PGPORT: String(await freePort()), METAMCP_DB_WAIT_SECONDS: "1" });
    expect(await exitWithin(app, 60_000)).toBe(4);
    expect(app.lines.join("\n")).toMatch(/cannot connect to Lakebase.*ECONNREFUSED/);
    expect(credentialDirs(app.tmp)).toEqual([]);
    await expectNoSurvivors(app);
  });

  describe("what an operator gets wrong on the database side: exit 4 with what to do", () => {
    it.each([
      [
        "PostgreSQL refusing the role (PGUSER not the app's principal)",
        { PGUSER: "someone-else" },
        /cannot connect to Lakebase .* as someone-else: .*(28P01|28000).* → check the app's database resource/,
      ],
      [
        "TLS required but the server has none (PGSSLMODE=require against a server without TLS): no waiting",
        { PGSSLMODE: "require" },
        /cannot connect to Lakebase .*does not support SSL.* → check PGSSLMODE and PGHOST/,
      ],
      [
        "a database that does not exist",
        { PGDATABASE: "no_such_db" },
        /cannot connect to Lakebase .*no_such_db.*3D000/,
      ],
    ])("%s", async (_what, overrides, message) => {
      const app = startRuntime(overrides);
      expect(await exitWithin(app, 60_000)).toBe(4);
      expect(app.lines.join("\n")).toMatch(message);
      expect(credentialDirs(app.tmp)).toEqual([]);
    });

    it("the schema exists but belongs to another role the app may not use", async () => {
      const admin = new pg.Client({ connectionString: db.adminUrl(db.database) });
      await admin.connect();
      try {
        await admin.query("CREATE SCHEMA IF NOT EXISTS someone_elses");
        const app = startRuntime({ METAMCP_DB_SCHEMA: "someone_elses" });
        expect(await exitWithin(app, 60_000)).toBe(4);
        expect(app.lines.join("\n")).toMatch(
          /schema someone_elses exists but belongs to role postgres, and .* may not use it .*GRANT USAGE, CREATE ON SCHEMA someone_elses/,
        );
      } finally {
        await admin.query("DROP SCHEMA IF EXISTS someone_elses CASCADE").catch(() => {});
        await admin.end();
      }
    });
  });

  it("METAMCP_LISTEN_HOST=127.0.0.1 binds the app port to loopback only; the default binds every interface", async () => {
    /** The local address the app port listens on, from the kernel's own table (/proc/net/tcp, state 0A). */
    const listeners = () =>
      readFileSync("/proc/net/tcp", "utf8")
        .split("\n")
        .slice(1)
        .map((l) => l.trim().split(/\s+/))
        .filter(
          (f) =>
            f[3] === "0A" && f[1]?.endsWith(`:${rig.appPort.toString(16).toUpperCase().padStart(4, "0")}`),
        )
        .map((f) => f[1]!.split(":")[0]);
    const local = startRuntime({ METAMCP_LISTEN_HOST: "127.0.0.1" });
    await waitLine(local, /listening on 127\.0\.0\.1:/);
    expect(listeners()).toEqual(["0100007F"]);
    local.child.kill("SIGTERM");
    expect(await exitWithin(local, 20_000)).toBe(0);
    const platformDefault = startRuntime();
    await waitLine(platformDefault, /listening on 0\.0\.0\.0:/);
    expect(listeners()).toEqual(["00000000"]);
    // Serving, MetaMCP's servers are on the internal ports this file picked, never on upstream's 12008/12009
    // (held by the suite with TEST_HOLD_UPSTREAM_PORTS=1, as a `make local` beside it would).
    await waitReady(platformDefault);
    const ports = listeningPorts(platformDefault.child.pid!);
    expect(ports).toEqual(
      expect.arrayContaining([rig.appPort, rig.internal.backendPort, rig.internal.frontendPort]),
    );
    for (const port of UPSTREAM_PORTS) expect(ports, `port ${port}`).not.toContain(port);
  });
});
