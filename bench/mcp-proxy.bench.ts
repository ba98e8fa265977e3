import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { execa, type ResultPromise } from "execa";
import pg from "pg";
import { freePort } from "../src/local/postgres.js";
import { localPaths, readRunState } from "../src/local/state.js";
import { localUserToken } from "../src/local/user-token.js";
import { waitFor } from "../src/retry.js";
import { ensureAuditTable } from "../src/runtime/audit-table.js";
import { ensureSchema, searchPathOption } from "../src/runtime/database.js";
import { principalOf, SessionTable } from "../src/runtime/session-guard.js";
import { runCli } from "../test/support/cli.js";
import { createFakeAppTree, FAKE_METAMCP_API_KEY, freeInternalPorts } from "../test/support/fake-app-tree.js";
import { startLakebaseLikePostgres } from "../test/support/postgres.js";
import { iterations } from "./smoke.js";

/**
 * MCP tool calls (the real SDK client) at three depths: through the local Apps proxy (Databricks token +
 * MetaMCP key), at the app's port (our router), and straight at MetaMCP's backend (12009); then 20
 * concurrent sessions through the router vs straight to the backend (what the router costs).
 * By default against the fake app tree; against a running `local up` of REAL MetaMCP with
 * BENCH_STATE_DIR=<its LOCAL_STATE_DIR> BENCH_ENDPOINT=<name> BENCH_API_KEY_FILE=<file with the key>.
 */
const CALLS = iterations(200, 3);
const SESSIONS = iterations(20, 2);
const THROUGHPUT_MS = iterations(5000, 200);
const ROUNDS = iterations(Number(process.env.BENCH_ROUNDS ?? 3));

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10;
};

async function session(url: string, headers: () => Promise<Record<string, string>>) {
  const client = new Client({ name: "bench", version: "1.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(url), {
      fetch: async (u, init) => {
        const h = new Headers(init?.headers);
        for (const [k, v] of Object.entries(await headers())) h.set(k, v);
        return await fetch(u, { ...init, headers: h });
      },
    }),
  );
  const tools = (await client.listTools()).tools.map((t) => t.name);
  const echo = tools.find((t) => t === "echo" || t.endsWith("__echo"));
  if (!echo) throw new Error(`no echo tool among ${tools.join(", ")}`);
  return { client, call: () => client.callTool({ name: echo, arguments: { text: "bench" } }) };
}

async function latencies(url: string, headers: () => Promise<Record<string, string>>) {
  const s = await session(url, headers);
  try {
    for (let i = 0; i < iterations(20); i++) await s.call(); // warm up
    const ms: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const t0 = performance.now();
      await s.call();
      ms.push(performance.now() - t0);
    }
    return { p50: pct(ms, 50), p95: pct(ms, 95) };
  } finally {
    await s.client.close();
  }
}

/** CPU time (user + system, µs) a process has used, from /proc (Linux); undefined elsewhere or when gone. */
function cpuUsOf(pid: number | undefined): number | undefined {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command's `(name)`: state is field 0, utime 11, stime 12, in clock ticks (100 a second).
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1_000_000) / 100;
  } catch {
    return undefined;
  }
}

/** The processes whose CPU per call a throughput run reports (the client is this process). */
interface Watched {
  router?: number;
  backend?: number;
}

interface Throughput {
  callsPerS: number;
  /** CPU µs per call of the client (the bench), the router and the backend, where known. */
  cpu: { client: number; router?: number; backend?: number };
}

async function throughput(
  url: string,
  headers: () => Promise<Record<string, string>>,
  watched: Watched = {},
): Promise<Throughput> {
  const sessions = await Promise.all(Array.from({ length: SESSIONS }, () => session(url, headers)));
  try {
    for (const s of sessions) await s.call();
    let calls = 0;
    const r0 = cpuUsOf(watched.router);
    const b0 = cpuUsOf(watched.backend);
    const c0 = process.cpuUsage();
    const until = performance.now() + THROUGHPUT_MS;
    await Promise.all(
      sessions.map(async (s) => {
        while (performance.now() < until) {
          await s.call();
          calls++;
        }
      }),
    );
    const c = process.cpuUsage(c0);
    const per = (a?: number, b?: number) =>
      a === undefined || b === undefined || calls === 0 ? undefined : Math.round((b - a) / calls);
    return {
      callsPerS: Math.round((calls / THROUGHPUT_MS) * 1000),
      cpu: {
        client: Math.round((c.user + c.system) / Math.max(1, calls)),
        router: per(r0, cpuUsOf(watched.router)),
        backend: per(b0, cpuUsOf(watched.backend)),
      },
    };
  } finally {
    await Promise.all(sessions.map((s) => s.client.close()));
  }
}

/** What the router's session table holds for 10,000 sessions of realistic callers (heap, KiB). */
function sessionTableKiB(count: number): number {
  const table = new SessionTable({ idleMs: 1_800_000, maxSessions: count, end: () => {} });
  // A collection before each reading, without --expose-gc on the command line.
  v8.setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < count; i++) {
    const headers = {
      "x-forwarded-email": `person-${i}@example.com`,
      "x-api-key": `sk_mt_${String(i).padStart(40, "0")}`,
      host: "metamcp-1234567890.aws.databricksapps.com",
    };
    table.add({
      id: crypto.randomUUID(),
      scope: `metamcp/endpoint-${i % 50}`,
      principal: principalOf(headers, undefined),
      transport: "streamable",
      close: { path: `/metamcp/endpoint-${i % 50}/mcp`, headers },
    });
  }
  gc();
  const kib = Math.round((process.memoryUsage().heapUsed - before) / 1024);
  if (table.size !== count) throw new Error(`the table holds ${table.size}, not ${count}`);
  return kib;
}

const AUDIT_CALLS = iterations(10_000, 20);
const AUDIT_PERSON = "bench-audit@example.com";

/** A router process of its own (bench/audit-router.ts), audit on or off, in front of the backend. */
async function routerProcess(backendPort: number, audit: "on" | "off" | "observe", pgJson: string) {
  const child = execa(
    process.execPath,
    ["--import", "tsx", path.join(import.meta.dirname, "audit-router.ts")],
    {
      env: { BACKEND_PORT: String(backendPort), AUDIT: audit, PG_URL_JSON: pgJson },
      buffer: false,
      reject: false,
    },
  );
  const lines: string[] = [];
  let rest = "";
  child.stdout!.on("data", (c: Buffer) => {
    rest += c.toString();
    const parts = rest.split("\n");
    rest = parts.pop()!;
    lines.push(...parts);
  });
  const port = await waitFor(
    () => {
      for (const l of lines) if (l.includes('"port"')) return (JSON.parse(l) as { port: number }).port;
      if (child.exitCode !== null) throw new Error(`the ${audit} router exited (${child.exitCode})`);
      return undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, what: `the audit-${audit} router` },
  );
  const stop = async () => {
    child.kill("SIGTERM");
    await (child as ResultPromise);
    const s = lines.find((l) => l.includes('"stats"'));
    return s
      ? (JSON.parse(s) as {
          stats: { written: number; dropped: number } | null;
          requests: number;
          cpuUs: number;
        })
      : undefined;
  };
  return { port, stop, pid: child.pid };
}

/**
 * The audit's cost (issue 24): the same router with the audit on and off, each in a process of its own as in
 * the app, in front of the same backend; alternated rounds, medians. Then AUDIT_CALLS calls by one person
 * through the audit-on router and the rows they left.
 */
async function auditFigures(
  backendPort: number,
  endpoint: string,
  direct: () => Promise<Record<string, string>>,
  backendPid: number | undefined,
): Promise<Record<string, number>> {
  const db = await startLakebaseLikePostgres();
  const password = "bench-audit-password-1234";
  await db.setPassword(password, 3600);
  const connection = { host: db.host, port: db.port, database: db.database, user: db.role, password };
  const admin = new pg.Client({ ...connection, options: searchPathOption("metamcp_app") });
  await admin.connect();
  const routers: { stop(): Promise<unknown> }[] = [];
  const cpuPerRequest = (r: { requests: number; cpuUs: number } | undefined) =>
    r && r.requests > 0 ? Math.round(r.cpuUs / r.requests) : -1;
  try {
    await ensureSchema(admin, "metamcp_app");
    await ensureAuditTable(admin, "metamcp_app");
    const json = JSON.stringify(connection);
    const on = await routerProcess(backendPort, "on", json);
    routers.push(on);
    const off = await routerProcess(backendPort, "off", json);
    routers.push(off);
    const observe = await routerProcess(backendPort, "observe", json);
    routers.push(observe);
    const url = (port: number) => `http://127.0.0.1:${port}/metamcp/${endpoint}/mcp`;
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const tOn: number[] = [];
    const tOff: number[] = [];
    const pOn: number[] = [];
    const pOff: number[] = [];
    const cOff: number[] = [];
    const cOn: number[] = [];
    const cRest: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const a = await throughput(url(off.port), direct, { router: off.pid, backend: backendPid });
      const b = await throughput(url(on.port), direct, { router: on.pid, backend: backendPid });
      tOff.push(a.callsPerS);
      tOn.push(b.callsPerS);
      if (a.cpu.router !== undefined && b.cpu.router !== undefined) {
        cOff.push(a.cpu.router);
        cOn.push(b.cpu.router);
        cRest.push(a.cpu.client + (a.cpu.backend ?? 0));
      }
      pOff.push((await latencies(url(off.port), direct)).p50);
      pOn.push((await latencies(url(on.port), direct)).p50);
      await throughput(url(observe.port), direct); // for its CPU per request only
    }
    const spread = (xs: number[]) =>
      Math.round(((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 1000) / 10;
    const metrics: Record<string, number> = {
      [`audit_off_sessions${SESSIONS}_calls_per_s`]: median(tOff),
      [`audit_on_sessions${SESSIONS}_calls_per_s`]: median(tOn),
      audit_cost_pct: Math.round((1 - median(tOn) / median(tOff)) * 1000) / 10,
      // The spread between rounds of one side: the machine's noise, to read audit_cost_pct against.
      audit_off_rounds_spread_pct: spread(tOff),
      audit_on_rounds_spread_pct: spread(tOn),
      audit_off_p50_ms: median(pOff),
      audit_on_p50_ms: median(pOn),
      audit_p50_added_ms: Math.round((median(pOn) - median(pOff)) * 100) / 100,
    };
    if (cOn.length) {
      // What the audit costs in CPU, the figure a busy machine moves least: the router's CPU per call with the
      // audit on less off, as a share of all the CPU one call takes (client, backend, router) with it off. On a
      // machine whose CPU is the limit, that share is the throughput the audit costs.
      const all = median(cRest) + median(cOff);
      metrics.audit_on_router_cpu_us_per_call = median(cOn);
      metrics.audit_off_router_cpu_us_per_call = median(cOff);
      metrics.audit_cpu_cost_pct = Math.round(((median(cOn) - median(cOff)) / all) * 1000) / 10;
    }
    // AUDIT_CALLS calls by one person over SESSIONS sessions: as many rows.
    const person = async () => ({ ...(await direct()), "x-forwarded-email": AUDIT_PERSON });
    const sessions = await Promise.all(Array.from({ length: SESSIONS }, () => session(url(on.port), person)));
    let started = 0;
    const t0 = performance.now();
    await Promise.all(
      sessions.map(async (s) => {
        while (started < AUDIT_CALLS) {
          started++;
          await s.call();
        }
      }),
    );
    metrics[`audit_${AUDIT_CALLS}_calls_ms`] = Math.round(performance.now() - t0);
    await Promise.all(sessions.map((s) => s.client.close()));
    const onEnd = await on.stop();
    routers.splice(routers.indexOf(on), 1);
    const offEnd = await off.stop();
    routers.splice(routers.indexOf(off), 1);
    metrics.audit_off_router_cpu_us_per_request = cpuPerRequest(offEnd);
    metrics.audit_on_router_cpu_us_per_request = cpuPerRequest(onEnd);
    const observeEnd = await observe.stop();
    routers.splice(routers.indexOf(observe), 1);
    metrics.audit_observe_only_router_cpu_us_per_request = cpuPerRequest(observeEnd);
    const rows = await admin.query<{ n: string }>(
      "SELECT count(*)::text AS n FROM metamcp_app.databricks_tool_calls WHERE principal = $1 AND method = 'tools/call' AND tool = 'echo'",
      [AUDIT_PERSON],
    );
    metrics[`audit_${AUDIT_CALLS}_calls_rows`] = Number(rows.rows[0]!.n);
    metrics.audit_rows_dropped = onEnd?.stats?.dropped ?? -1;
    return metrics;
  } finally {
    await Promise.all(routers.map((r) => r.stop()));
    await admin.end().catch(() => {});
    await db.stop();
  }
}

export default {
  name: "mcp-proxy",
  async run(): Promise<Record<string, number | string>> {
    const external = process.env.BENCH_STATE_DIR;
    const work = external ? undefined : mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-mcp-"));
    const stateDir = external ?? path.join(work!, "state");
    // The fake tree on free internal ports (beside `make local` and the suite); a real one on upstream's.
    const internal = work ? await freeInternalPorts() : undefined;
    const backendPort = internal?.backendPort ?? Number(process.env.METAMCP_BACKEND_PORT ?? 12009);
    const env = { APP_DIR: path.join(work ?? "", "app"), LOCAL_STATE_DIR: stateDir, ...internal?.env };
    const endpoint = process.env.BENCH_ENDPOINT ?? "demo";
    const key = process.env.BENCH_API_KEY_FILE
      ? readFileSync(process.env.BENCH_API_KEY_FILE, "utf8").trim()
      : FAKE_METAMCP_API_KEY;
    try {
      if (work) {
        chmodSync(work, 0o755);
        createFakeAppTree(env.APP_DIR, { backendPort });
        const up = await runCli(
          ["--json", "local", "up", "--detach", "--no-build", "--port", String(await freePort())],
          { cwd: work, env },
        );
        if (up.exitCode !== 0) throw new Error(`local up failed: ${up.stderr}`);
      }
      const state = readRunState(localPaths(stateDir));
      if (!state) throw new Error(`nothing runs with state dir ${stateDir}`);
      let token = await localUserToken(stateDir);
      const viaProxy = async () => {
        if (token.expiresAt.getTime() - Date.now() < 60_000) token = await localUserToken(stateDir);
        return { authorization: `Bearer ${token.token}`, "x-api-key": key };
      };
      const direct = async () => ({ "x-api-key": key });
      const proxyUrl = `${state.appUrl}/metamcp/${endpoint}/mcp`;
      const routerUrl = `http://127.0.0.1:${state.ports.app}/metamcp/${endpoint}/mcp`;
      const backendUrl = `http://127.0.0.1:${backendPort}/metamcp/${endpoint}/mcp`;
      const metrics: Record<string, number | string> = {
        target: external ? "running local (real?)" : "fake tree",
      };
      for (const [name, url, h] of process.env.BENCH_SKIP_LATENCY
        ? []
        : ([
            ["proxy", proxyUrl, viaProxy],
            ["app_port", routerUrl, direct],
            ["backend", backendUrl, direct],
          ] as const)) {
        const l = await latencies(url, h);
        metrics[`call_${name}_p50_ms`] = l.p50;
        metrics[`call_${name}_p95_ms`] = l.p95;
      }
      // Alternate, and take medians, to spread the machine's noise over both sides.
      // The backend's pid: the fake tree says it; a real MetaMCP's can be given (BENCH_BACKEND_PID).
      const backendPid = work
        ? ((await (await fetch(`http://127.0.0.1:${backendPort}/metamcp/pid`)).json()) as { pid: number }).pid
        : Number(process.env.BENCH_BACKEND_PID) || undefined;
      const watched = { router: state.appPid, backend: backendPid };
      const r: number[] = [];
      const b: number[] = [];
      const share: number[] = [];
      const routerCpu: number[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        b.push((await throughput(backendUrl, direct, watched)).callsPerS);
        const t = await throughput(routerUrl, direct, watched);
        r.push(t.callsPerS);
        if (t.cpu.router !== undefined && t.cpu.backend !== undefined) {
          routerCpu.push(t.cpu.router);
          share.push((t.cpu.router / (t.cpu.router + t.cpu.backend + t.cpu.client)) * 100);
        }
      }
      const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
      const router = median(r);
      const backend = median(b);
      metrics[`sessions${SESSIONS}_router_calls_per_s`] = router;
      metrics[`sessions${SESSIONS}_backend_calls_per_s`] = backend;
      metrics.router_cost_pct = Math.round((1 - router / backend) * 1000) / 10;
      if (share.length) {
        // The router's share of all the CPU a call takes through it (client, router, backend): what it costs in
        // throughput where CPU is the limit, and far steadier than router_cost_pct on a shared machine.
        metrics[`sessions${SESSIONS}_router_cpu_us_per_call`] = median(routerCpu);
        metrics.router_cpu_cost_pct = Math.round(median(share) * 10) / 10;
      }
      metrics.session_table_10000_kib = sessionTableKiB(10_000);
      if (!process.env.BENCH_SKIP_AUDIT)
        Object.assign(metrics, await auditFigures(backendPort, endpoint, direct, backendPid));
      return metrics;
    } finally {
      if (work) {
        await runCli(["local", "down"], { cwd: work, env });
        rmSync(work, { recursive: true, force: true });
      }
    }
  },
};
