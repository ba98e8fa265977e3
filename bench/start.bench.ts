import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { loadConfig } from "../src/config/load.js";
import { startPlatform } from "../src/local/platform/index.js";
import { freePort } from "../src/local/postgres.js";
import { silentLogger } from "../src/log/logger.js";
import { runMigrations, searchPathOption } from "../src/runtime/database.js";
import { createFakeAppTree, freeInternalPorts } from "../test/support/fake-app-tree.js";
import { startLakebaseLikePostgres } from "../test/support/postgres.js";
import { iterations } from "./smoke.js";

/**
 * `start` on the fake MetaMCP-shaped tree and one Lakebase-like database, side by side with the plain
 * upstream-like sequence (migrate, then `node` backend + frontend): start-to-healthy for both (each in a
 * fresh schema, so both really migrate), then MCP-style streaming latency (SSE first event, small POST
 * round trip) through our router on the app port vs straight to the backend on 12009.
 */
/** MetaMCP's internal ports: free ones, so the bench runs beside `make local` and the suite. */
let BACKEND = 12009;
let FRONTEND = 12008;

function spawnGroup(cmd: string, args: string[], cwd: string, env: Record<string, string>): ChildProcess {
  return spawn(cmd, args, { cwd, env, stdio: "ignore", detached: true });
}

async function until(url: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.arrayBuffer().then(() => r.status === 200))
      .catch(() => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${url} not healthy within ${timeoutMs} ms`);
}

async function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  try {
    process.kill(-child.pid!, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // gone
    }
  }, 15_000);
  await exited;
  clearTimeout(timer);
  try {
    process.kill(-child.pid!, "SIGKILL");
  } catch {
    // group gone
  }
}

async function portsFree(): Promise<void> {
  const end = Date.now() + 15_000;
  while (Date.now() < end) {
    const busy = await fetch(`http://127.0.0.1:${BACKEND}/health`, { signal: AbortSignal.timeout(500) })
      .then(() => true)
      .catch(() => false);
    if (!busy) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${BACKEND} still in use`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round((s[Math.floor(s.length / 2)] ?? 0) * 100) / 100;
}

async function sseFirstEventMs(base: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${base}/metamcp/sse?n=3&gap=1`, { signal: AbortSignal.timeout(5000) });
  const reader = res.body!.getReader();
  await reader.read();
  const ms = performance.now() - t0;
  await reader.cancel();
  return ms;
}

async function postRoundTripMs(base: string): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${base}/metamcp/health`, {
    method: "POST",
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
    headers: { "content-type": "application/json" },
    signal: AbortSignal.timeout(5000),
  });
  await res.arrayBuffer();
  return performance.now() - t0;
}

async function latency(base: string, n: number): Promise<{ sse: number; post: number }> {
  const sse: number[] = [];
  const post: number[] = [];
  for (let i = 0; i < iterations(5); i++) await sseFirstEventMs(base); // warm-up
  for (let i = 0; i < n; i++) {
    sse.push(await sseFirstEventMs(base));
    post.push(await postRoundTripMs(base));
  }
  return { sse: median(sse), post: median(post) };
}

export default {
  name: "start",
  async run(): Promise<Record<string, number | string>> {
    const internal = await freeInternalPorts();
    BACKEND = internal.backendPort;
    FRONTEND = internal.frontendPort;
    const treeDir = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-tree-")), {
      backendPort: BACKEND,
    });
    const config = loadConfig({ cwd: treeDir, env: { APP_NAME: "metamcp-bench" } });
    // The database the configuration names (its default changed to metamcp: the bench must follow it).
    const db = await startLakebaseLikePostgres({ role: "bench-app-sp", database: config.lakebase.database });
    const appPort = await freePort();
    const platform = await startPlatform({
      config,
      secrets: {
        betterAuthSecret: "a-real-looking-secret-0123456789",
        clientId: db.role,
        clientSecret: "sp-secret-bench",
        pgSuperPassword: "",
        userClientId: "local-cli-test",
        userClientSecret: "user-client-secret-test",
      },
      postgres: db,
      proxyPort: await freePort(),
      appPort,
      credentialTtlSeconds: 3600,
      log: silentLogger,
    });
    const children: ChildProcess[] = [];
    try {
      await portsFree();
      // Ours: node runtime/start.mjs, as app.yaml runs it.
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        ...platform.appEnv,
        ...internal.env,
        METAMCP_DB_SCHEMA: "bench_ours",
      };
      let t0 = performance.now();
      const ours = spawnGroup(process.execPath, [path.join(treeDir, "runtime/start.mjs")], treeDir, env);
      children.push(ours);
      await until(`http://127.0.0.1:${appPort}/metamcp/health`, 60_000);
      const oursMs = Math.round(performance.now() - t0);
      const viaRouter = await latency(`http://127.0.0.1:${appPort}`, iterations(50, 2));
      const direct = await latency(`http://127.0.0.1:${BACKEND}`, iterations(50, 2));
      await stopGroup(ours);
      await portsFree();

      // Plain, upstream-like: migrate with drizzle's migrator, then node backend + node frontend.
      // The role logs in with a credential the stand-in issued (RADIUS, as for the runtime): one for an hour.
      const password = platform.issueDatabaseCredential(3600).token;
      const schema = "bench_plain";
      const beDir = path.join(treeDir, "metamcp/apps/backend");
      const feDir = path.join(treeDir, "metamcp/apps/frontend");
      const url = db.roleUrl(password);
      t0 = performance.now();
      const client = new pg.Client({ connectionString: url, options: searchPathOption(schema) });
      await client.connect();
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      await runMigrations(client, {
        migrationsFolder: path.join(beDir, "drizzle"),
        schema,
        log: silentLogger,
      });
      await client.end();
      const plainEnv = {
        PATH: process.env.PATH ?? "",
        DATABASE_URL: url,
        PGOPTIONS: searchPathOption(schema),
        HOSTNAME: "127.0.0.1",
        // What upstream's own .env gives MetaMCP (the runtime sets the same from the platform's values).
        APP_URL: platform.appUrl,
        NEXT_PUBLIC_APP_URL: platform.appUrl,
        BETTER_AUTH_SECRET: "a-real-looking-secret-0123456789",
        // Our backend-loopback patch's port (upstream's fixed 12009 otherwise); the frontend asks it there too.
        METAMCP_BACKEND_PORT: String(BACKEND),
      };
      const be = spawnGroup(process.execPath, ["dist/index.js"], beDir, {
        ...plainEnv,
        PORT: String(BACKEND),
      });
      const fe = spawnGroup(process.execPath, ["server.js"], feDir, { ...plainEnv, PORT: String(FRONTEND) });
      children.push(be, fe);
      await Promise.all([
        until(`http://127.0.0.1:${BACKEND}/health`, 60_000),
        until(`http://127.0.0.1:${FRONTEND}/`, 60_000),
      ]);
      const plainMs = Math.round(performance.now() - t0);
      return {
        "start-to-healthy ours (ms)": oursMs,
        "start-to-healthy plain (ms)": plainMs,
        "SSE first event via router (ms, median of 50)": viaRouter.sse,
        "SSE first event direct to backend (ms)": direct.sse,
        "POST round trip via router (ms)": viaRouter.post,
        "POST round trip direct (ms)": direct.post,
      };
    } finally {
      for (const c of children) await stopGroup(c);
      await platform.close();
      await db.stop();
      rmSync(treeDir, { recursive: true, force: true });
    }
  },
};
