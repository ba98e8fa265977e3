import { randomUUID } from "node:crypto";
import { Agent, createServer, type IncomingHttpHeaders, request } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { waitFor } from "../src/retry.js";
import { iterations } from "./smoke.js";

/**
 * The router's own cost, without MetaMCP's: the router (bench/audit-router.ts, a process of its own, audit off
 * or observing) in front of a backend that answers MCP-shaped requests as fast as Node can (streamable HTTP
 * answers as SSE, as the SDK writes them). The SDK's server takes ten times the router's CPU per call, so in
 * `mcp-proxy` the router's share drowns in the machine's noise; here its CPU per request is the figure.
 */
const ROUNDS = iterations(Number(process.env.BENCH_ROUNDS ?? 3));
const LOAD_MS = iterations(3000, 200);
const SESSIONS = iterations(20, 2);

function fastBackend() {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let msg: { id?: number; method?: string } = {};
      try {
        msg = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {}
      const sid = req.headers["mcp-session-id"] ?? randomUUID();
      if (msg.id === undefined) {
        res.writeHead(202, { "mcp-session-id": sid });
        res.end();
        return;
      }
      const result =
        msg.method === "initialize"
          ? {
              protocolVersion: "2025-06-18",
              capabilities: { tools: {} },
              serverInfo: { name: "f", version: "0" },
            }
          : { content: [{ type: "text", text: "bench" }] };
      res.writeHead(200, {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "mcp-session-id": sid,
      });
      res.end(`event: message\ndata: ${JSON.stringify({ result, jsonrpc: "2.0", id: msg.id })}\n\n`);
    });
  });
  return server;
}

/** SESSIONS sessions of tools/call in a loop for LOAD_MS: calls per second and the p50 of a call. */
async function load(port: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: SESSIONS * 2 });
  const post = (headers: Record<string, string>, body: object) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders }>((resolve, reject) => {
      const r = request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/metamcp/demo/mcp",
          agent,
          headers: {
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
            "x-api-key": "sk_mt_bench",
            ...headers,
          },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
        },
      );
      r.on("error", reject);
      r.end(JSON.stringify(body));
    });
  const ms: number[] = [];
  let calls = 0;
  const one = async () => {
    const init = await post(
      {},
      {
        method: "initialize",
        params: {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "bench", version: "1" },
        },
        jsonrpc: "2.0",
        id: 0,
      },
    );
    const sid = String(init.headers["mcp-session-id"] ?? "");
    await post({ "mcp-session-id": sid }, { method: "notifications/initialized", jsonrpc: "2.0" });
    const until = performance.now() + LOAD_MS;
    for (let id = 1; performance.now() < until; id++) {
      const t0 = performance.now();
      const r = await post(
        { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" },
        { method: "tools/call", params: { name: "echo", arguments: { text: "bench" } }, jsonrpc: "2.0", id },
      );
      if (r.status !== 200) throw new Error(`a call answered ${r.status}`);
      ms.push(performance.now() - t0);
      calls++;
    }
  };
  try {
    await Promise.all(Array.from({ length: SESSIONS }, one));
  } finally {
    agent.destroy();
  }
  ms.sort((a, b) => a - b);
  return { callsPerS: Math.round((calls / LOAD_MS) * 1000), p50: ms[Math.floor(ms.length / 2)] ?? 0 };
}

async function routerRun(backendPort: number, audit: "off" | "observe") {
  const child = execa(
    process.execPath,
    ["--import", "tsx", path.join(import.meta.dirname, "audit-router.ts")],
    {
      env: { BACKEND_PORT: String(backendPort), AUDIT: audit },
      buffer: false,
      reject: false,
    },
  );
  let out = "";
  child.stdout!.on("data", (c: Buffer) => {
    out += c.toString();
  });
  const port = await waitFor(
    () => {
      const m = /"port":(\d+)/.exec(out);
      if (m) return Number(m[1]);
      if (child.exitCode !== null) throw new Error(`the router exited (${child.exitCode})`);
      return undefined;
    },
    { timeoutMs: 30_000, intervalMs: 50, what: `the audit-${audit} router` },
  );
  // Warm up (JIT), then the measured run; the router's CPU covers both, its request count too.
  await load(port);
  const l = await load(port);
  child.kill("SIGTERM");
  await (child as ResultPromise);
  const stats = JSON.parse(out.split("\n").find((x) => x.includes('"stats"')) ?? "{}") as {
    requests?: number;
    cpuUs?: number;
  };
  return { ...l, cpuUs: stats.requests ? stats.cpuUs! / stats.requests : -1 };
}

export default {
  name: "mcp-proxy-core",
  async run(): Promise<Record<string, number | string>> {
    const backend = fastBackend();
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", () => r()));
    const backendPort = (backend.address() as AddressInfo).port;
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    const r2 = (x: number) => Math.round(x * 100) / 100;
    try {
      const direct: { callsPerS: number; p50: number }[] = [];
      const off: Awaited<ReturnType<typeof routerRun>>[] = [];
      const observe: Awaited<ReturnType<typeof routerRun>>[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        direct.push(await load(backendPort));
        off.push(await routerRun(backendPort, "off"));
        observe.push(await routerRun(backendPort, "observe"));
      }
      const cpuOff = median(off.map((x) => x.cpuUs));
      const cpuObserve = median(observe.map((x) => x.cpuUs));
      return {
        load: `${SESSIONS} sessions, ${ROUNDS} rounds, median`,
        core_direct_calls_per_s: median(direct.map((x) => x.callsPerS)),
        core_router_calls_per_s: median(off.map((x) => x.callsPerS)),
        core_direct_p50_ms: r2(median(direct.map((x) => x.p50))),
        core_router_p50_ms: r2(median(off.map((x) => x.p50))),
        core_router_cpu_us_per_request: Math.round(cpuOff),
        core_router_cpu_us_min: Math.round(Math.min(...off.map((x) => x.cpuUs))),
        core_audit_observe_cpu_us_per_request: Math.round(cpuObserve),
        core_audit_observe_cpu_us_min: Math.round(Math.min(...observe.map((x) => x.cpuUs))),
        core_audit_cpu_added_us: Math.round(cpuObserve - cpuOff),
      };
    } finally {
      backend.closeAllConnections();
      await new Promise((r) => backend.close(r));
    }
  },
};
