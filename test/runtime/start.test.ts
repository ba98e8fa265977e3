import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { type LocalPlatform, startPlatform } from "../../src/local/platform/index.js";
import { freePort } from "../../src/local/postgres.js";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import { runMigrations } from "../../src/runtime/database.js";
import { MCP_TOOL_TIMEOUT_MS, seedMcpTimeouts } from "../../src/runtime/mcp-timeouts.js";
import { createFakeAppTree, FAKE_TREE_TABLES, freeInternalPorts } from "../support/fake-app-tree.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";
import { holdUpstreamPorts } from "../support/upstream-port-holders.js";

/**
 * The runtime bundle (`node runtime/start.mjs`, as app.yaml runs it) against the Databricks stand-in
 * and a Lakebase-like PostgreSQL whose passwords are the issued credentials, expiring at login.
 * MetaMCP's internal ports are free ones picked per run (METAMCP_BACKEND_PORT / METAMCP_FRONTEND_PORT, the
 * tree built for them), so this runs beside anything holding upstream's 12008/12009.
 */
interface Running {
  child: ChildProcess;
  lines: string[];
  exited: Promise<{ code: number | null; ms: number }>;
}

let portHolders: Awaited<ReturnType<typeof holdUpstreamPorts>> | undefined;
let db: LakebaseLikePostgres;
let platform: LocalPlatform;
let treeDir: string;
let appPort: number;
let internalPortsEnv: Record<string, string>;
const running: Running[] = [];

function startRuntime(overrides: Record<string, string | undefined> = {}): Running {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp" };
  for (const [k, v] of Object.entries({ ...platform.appEnv, ...internalPortsEnv, ...overrides }))
    if (v !== undefined) env[k] = v;
  const t0 = Date.now();
  // Its own process group, so cleanup can take the runtime AND its children down even after a failure.
  const child = spawn(process.execPath, [path.join(treeDir, "runtime/start.mjs")], {
    cwd: treeDir,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const lines: string[] = [];
  for (const s of [child.stdout!, child.stderr!])
    createInterface({ input: s }).on("line", (l) => lines.push(l));
  const exited = new Promise<{ code: number | null; ms: number }>((resolve) =>
    child.once("exit", (code) => resolve({ code, ms: Date.now() - t0 })),
  );
  const r = { child, lines, exited };
  running.push(r);
  return r;
}

async function appGet(pathname: string, init: RequestInit = {}): Promise<Response> {
  return await fetch(`http://127.0.0.1:${appPort}${pathname}`, {
    ...init,
    signal: AbortSignal.timeout(10_000),
  });
}

async function waitReady(r: Running): Promise<void> {
  await waitFor(
    async () => {
      if (r.child.exitCode !== null)
        throw new Error(`runtime exited ${r.child.exitCode}:\n${r.lines.join("\n")}`);
      const res = await appGet("/metamcp/health").catch(() => undefined);
      return res?.status === 200 ? true : undefined;
    },
    { timeoutMs: 60_000, what: "the runtime to serve /metamcp/health" },
  );
}

describe("the runtime bundle against the Databricks stand-in", () => {
  beforeAll(async () => {
    db = await startLakebaseLikePostgres({ role: "6c0e1f9a-app-sp" });
    // As a `make local` beside the suite would (TEST_HOLD_UPSTREAM_PORTS=1): 12008/12009 taken; ours are free ones.
    portHolders = await holdUpstreamPorts();
    const internal = await freeInternalPorts();
    internalPortsEnv = internal.env;
    treeDir = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), "mmdb-tree-")), {
      backendPort: internal.backendPort,
    });
    appPort = await freePort();
    const config = loadConfig({
      cwd: treeDir,
      env: { APP_NAME: "metamcp-test", LAKEBASE_DATABASE: db.database },
    });
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
      proxyPort: await freePort(),
      appPort,
      credentialTtlSeconds: 3,
      log: silentLogger,
    });
  });

  afterEach(async () => {
    for (const r of running.splice(0)) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill("SIGTERM");
        const timer = setTimeout(() => r.child.kill("SIGKILL"), 15_000);
        await r.exited;
        clearTimeout(timer);
      }
      try {
        process.kill(-r.child.pid!, "SIGKILL"); // anything left in its group
      } catch {
        // the group is gone: nothing orphaned
      }
    }
  });

  afterAll(async () => {
    await platform?.close();
    await db?.stop();
    await portHolders?.release();
    if (treeDir) rmSync(treeDir, { recursive: true, force: true });
  });

  describe("start (the runtime inside the app)", () => {
    it("migrates into the custom schema and serves through one port, across credential renewals with zero failed queries", async () => {
      const app = startRuntime();
      await waitReady(app);
      // Served while upstream's 12008/12009 are someone else's (when this suite could take them).
      for (const port of portHolders?.held ?? [])
        expect((await fetch(`http://127.0.0.1:${port}/`)).status, `port ${port}`).toBe(503);
      const notes = await (await appGet("/metamcp/notes")).json();
      expect(notes).toEqual({ bodies: [], schema: null });
      // Every request opens a NEW login (and the pool's idle connections expire): each must use the current credential.
      let ok = 0;
      const failures: string[] = [];
      const renewals = () => app.lines.filter((l) => l.includes("database credential renewed")).length;
      await waitFor(
        async () => {
          for (const p of ["/metamcp/fresh", `/metamcp/notes?body=n${ok}`]) {
            const res = await appGet(p, p.includes("body=") ? { method: "POST" } : {});
            if (res.status === 200) ok++;
            else failures.push(`${p}: ${res.status} ${await res.text()}`);
          }
          return renewals() >= 5 ? true : undefined;
        },
        { timeoutMs: 60_000, what: "five credential renewals", intervalMs: 50 },
      );
      // On failure, the app's own last lines say which side failed.
      expect(failures, app.lines.slice(-60).join("\n")).toEqual([]);
      expect(ok).toBeGreaterThan(10);
      const fresh = await (await appGet("/metamcp/fresh")).json();
      expect(fresh).toEqual({ schema: "metamcp_app" });
      // As the app's role, with a credential of the stand-in's (its logins are the stand-in's to check).
      const tables = await Promise.resolve(platform.issueDatabaseCredential(60)).then(async ({ token }) => {
        const c = new pg.Client({ connectionString: db.roleUrl(token) });
        await c.connect();
        const r = await c.query(
          "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog','information_schema') ORDER BY 2",
        );
        await c.end();
        return r.rows;
      });
      // Upstream's (fake) tables and our own endpoint-identity table, all in the custom schema.
      expect(tables).toEqual(
        FAKE_TREE_TABLES.map((table_name) => ({ table_schema: "metamcp_app", table_name })),
      );
      // No secret in the runtime's own output.
      // local's default user stands for the deployer (CAN_MANAGE): the one STDIO manager, said at start.
      expect(app.lines.join("\n")).toContain(
        "STDIO servers: only the app's managers may create or change them (1 user(s), 0 service principal(s) in METAMCP_APP_MANAGERS)",
      );
      expect(app.lines.join("\n")).not.toContain("sp-secret-xyz");
      expect(app.lines.join("\n")).not.toContain("a-real-looking-secret-0123456789");
    });

    it("serves with a provisioned (legacy) Lakebase instance too", async () => {
      const app = startRuntime({
        LAKEBASE_KIND: "provisioned",
        LAKEBASE_ENDPOINT: undefined,
        LAKEBASE_INSTANCE_NAME: "metamcp-test-db",
      });
      await waitReady(app);
      expect(await (await appGet("/metamcp/fresh")).json()).toEqual({ schema: "metamcp_app" });
      expect(app.lines.join("\n")).toContain("Lakebase credential (provisioned)");
    });

    it("restarts a child that exits with code 0 instead of taking it for success", async () => {
      const app = startRuntime();
      await waitReady(app);
      const before = (await (await appGet("/metamcp/pid")).json()) as { pid: number };
      await appGet("/metamcp/exit0");
      await waitFor(
        async () => {
          const res = await appGet("/metamcp/pid").catch(() => undefined);
          if (res?.status !== 200) return undefined;
          const now = (await res.json()) as { pid: number };
          return now.pid !== before.pid ? true : undefined;
        },
        { timeoutMs: 20_000, what: "the backend to be restarted" },
      );
      expect(app.lines.some((l) => l.includes("backend exited unexpectedly (code 0"))).toBe(true);
      expect(app.child.exitCode).toBeNull();
    });

    it("on SIGTERM finishes the request in flight, stops its children and exits 0 within 15 s", async () => {
      const app = startRuntime();
      await waitReady(app);
      const { pid: backendPid } = (await (await appGet("/metamcp/pid")).json()) as { pid: number };
      const slow = appGet("/metamcp/slow?ms=1500");
      await new Promise((r) => setTimeout(r, 200)); // let the request reach the backend
      app.child.kill("SIGTERM");
      const res = await slow;
      expect(res.status).toBe(200);
      const exit = await app.exited;
      expect(exit.code).toBe(0);
      expect(() => process.kill(backendPid, 0)).toThrow();
    });

    it("exits 2 naming the missing piece when the app tree's backend has no drizzle-orm", async () => {
      const broken = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), "mmdb-tree-nodrizzle-")), {
        withoutDrizzle: true,
      });
      try {
        const app = startRuntime({ METAMCP_ROOT: path.join(broken, "metamcp") });
        const exit = await app.exited;
        expect(exit.code).toBe(2);
        expect(app.lines.join("\n")).toMatch(/the app tree's backend has no usable drizzle-orm.*make build/);
      } finally {
        rmSync(broken, { recursive: true, force: true });
      }
    });

    it.each([
      [
        "a wrong client secret",
        { DATABRICKS_CLIENT_SECRET: "wrong" },
        4,
        /refused the app's service principal/,
      ],
      [
        "an unknown Lakebase endpoint",
        { LAKEBASE_ENDPOINT: "projects/x/branches/y/endpoints/z" },
        4,
        /does not exist/,
      ],
      [
        "an unknown provisioned instance",
        {
          LAKEBASE_KIND: "provisioned",
          LAKEBASE_ENDPOINT: undefined,
          LAKEBASE_INSTANCE_NAME: "no-such-instance",
        },
        4,
        /no-such-instance/,
      ],
      [
        "an unreachable workspace",
        { DATABRICKS_HOST: "http://127.0.0.1:9" },
        4,
        /cannot reach http:\/\/127\.0\.0\.1:9/,
      ],
      [
        "a placeholder auth secret",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal placeholder an unresolved valueFrom leaves
        { BETTER_AUTH_SECRET: "${BETTER_AUTH_SECRET}" },
        2,
        /BETTER_AUTH_SECRET is a placeholder/,
      ],
      ["no PGHOST", { PGHOST: undefined }, 2, /PGHOST is not set/],
      [
        "a database that is down",
        { PGPORT: "9", METAMCP_DB_WAIT_SECONDS: "2" },
        4,
        /cannot connect to Lakebase.*ECONNREFUSED/,
      ],
    ])("exits non-zero with a clear reason on %s", async (_what, overrides, code, message) => {
      const app = startRuntime(overrides);
      const exit = await app.exited;
      expect(exit.code).toBe(code);
      expect(app.lines.join("\n")).toMatch(message);
      expect(app.lines.join("\n")).not.toContain("sp-secret-xyz");
    });
  });

  describe("migrations", () => {
    it("run once when two instances start together (advisory lock), and are a no-op after", async () => {
      const folder = path.join(treeDir, "metamcp/apps/backend/drizzle");
      const { token } = platform.issueDatabaseCredential(60);
      const clients = [0, 1, 2].map(
        () =>
          new pg.Client({
            connectionString: db.roleUrl(token),
            options: "-c search_path=race_schema,public",
          }),
      );
      await Promise.all(clients.map((c) => c.connect()));
      try {
        await clients[0]!.query("CREATE SCHEMA IF NOT EXISTS race_schema");
        const results = await Promise.all(
          clients
            .slice(0, 2)
            .map((c) =>
              runMigrations(c, { migrationsFolder: folder, schema: "race_schema", log: silentLogger }),
            ),
        );
        const migrations = (
          JSON.parse(readFileSync(path.join(folder, "meta/_journal.json"), "utf8")) as { entries: unknown[] }
        ).entries.length;
        expect(results.map((r) => r.applied).sort()).toEqual([0, migrations]);
        const again = await runMigrations(clients[2]!, {
          migrationsFolder: folder,
          schema: "race_schema",
          log: silentLogger,
        });
        expect(again).toEqual({ applied: 0, total: migrations });

        // MetaMCP's tool timeouts: seeded under the proxy's cut, a value chosen in Settings kept.
        await clients[2]!.query("INSERT INTO race_schema.config (id, value) VALUES ('MCP_TIMEOUT', '30000')");
        expect(await seedMcpTimeouts(clients[2]!, "race_schema")).toEqual({
          MCP_TIMEOUT: 30_000,
          MCP_MAX_TOTAL_TIMEOUT: MCP_TOOL_TIMEOUT_MS,
        });
        expect(MCP_TOOL_TIMEOUT_MS).toBeGreaterThanOrEqual(100_000);
        expect(MCP_TOOL_TIMEOUT_MS).toBeLessThan(120_000);
        expect(await seedMcpTimeouts(clients[2]!, "no_such_schema")).toBeUndefined();
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    });
  });
});
