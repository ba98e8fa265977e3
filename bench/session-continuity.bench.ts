import pg from "pg";
import { SessionContinuity } from "../src/runtime/session-continuity.js";
import { ensureSessionTable, SessionStore } from "../src/runtime/session-store.js";
import { startLakebaseLikePostgres } from "../test/support/postgres.js";
import {
  ADA,
  as,
  callWith,
  connect,
  SECRET,
  startRouter,
  startUpstreamShapedBackend,
} from "../test/support/upstream-shaped-backend.js";
import type { Bench } from "./run.js";
import { iterations } from "./smoke.js";

/**
 * Session continuity (docs/scaling.md), in one process against an upstream-shaped MetaMCP backend and an
 * embedded PostgreSQL:
 * - re-opening: a session opened on instance A, its first call on instance B (which never saw it: a lookup in
 *   the table + MetaMCP's initialize + notifications/initialized + the call), against the same call where the
 *   session is live and against one initialize round trip straight at MetaMCP (p50/p95);
 * - steady state: one session's calls through a router with continuity off and on, interleaved (p50/p95).
 */
const SESSIONS = iterations(40, 2);
const CALLS = iterations(600, 4);
const THROUGHPUT_MS = iterations(3000, 200);
const CONCURRENT = iterations(8, 2);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 100) / 100;
};

async function timed(f: () => Promise<Response>): Promise<number> {
  const t0 = performance.now();
  const res = await f();
  await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  return performance.now() - t0;
}

const bench: Bench = {
  name: "session-continuity",
  async run() {
    const db = await startLakebaseLikePostgres();
    const password = "bench-session-continuity";
    await db.setPassword(password, 3600);
    const url = db.roleUrl(password);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query("CREATE SCHEMA IF NOT EXISTS metamcp_app");
    await ensureSessionTable(c, "metamcp_app");
    await c.end();
    const closers: Array<() => Promise<void>> = [];
    const instance = async (continuityOn: boolean) => {
      const backend = await startUpstreamShapedBackend();
      const store = new SessionStore({
        connection: { connectionString: url },
        schema: "metamcp_app",
        idleMs: 600_000,
      });
      const continuity = continuityOn
        ? new SessionContinuity({ store, backendPort: backend.port, identitySecret: SECRET })
        : undefined;
      const { router, url: base } = await startRouter(backend.port, { continuity });
      closers.push(async () => {
        await router.close(100);
        continuity?.close();
        await store.close();
        await backend.kill();
      });
      return { backend, base };
    };
    try {
      const a = await instance(true);
      const b = await instance(true);
      const off = await instance(false);
      const path = `/metamcp/${ADA.endpoint}/mcp`;
      const initialize = () =>
        fetch(`http://127.0.0.1:${b.backend.port}${path}`, {
          method: "POST",
          headers: {
            ...as(ADA),
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
          },
          body: JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "initialize",
            params: {
              protocolVersion: "2025-06-18",
              capabilities: {},
              clientInfo: { name: "b", version: "1" },
            },
          }),
        });
      const lookups = new SessionStore({
        connection: { connectionString: url },
        schema: "metamcp_app",
        idleMs: 600_000,
      });
      closers.push(() => lookups.close());
      const lookup: number[] = [];
      const init: number[] = [];
      const reopen: number[] = [];
      const live: number[] = [];
      for (let i = 0; i < SESSIONS; i++) {
        const s = await connect(a.base, ADA);
        init.push(await timed(initialize));
        const t0 = performance.now();
        await lookups.get(s.sessionId);
        lookup.push(performance.now() - t0);
        await timed(() => callWith(a.base, path, s.sessionId, as(ADA))); // warm on A
        live.push(await timed(() => callWith(a.base, path, s.sessionId, as(ADA))));
        reopen.push(await timed(() => callWith(b.base, path, s.sessionId, as(ADA))));
        await s.client.close();
      }
      const steadyOn: number[] = [];
      const steadyOff: number[] = [];
      const on = await connect(a.base, ADA);
      const plain = await connect(off.base, ADA);
      for (let i = 0; i < CALLS; i++) {
        steadyOn.push(await timed(() => callWith(a.base, path, on.sessionId, as(ADA))));
        steadyOff.push(await timed(() => callWith(off.base, path, plain.sessionId, as(ADA))));
      }
      await on.client.close();
      await plain.client.close();
      // Throughput: CONCURRENT sessions calling as fast as they can for THROUGHPUT_MS, off then on, twice.
      const throughput = async (base: string) => {
        const sessions = await Promise.all(Array.from({ length: CONCURRENT }, () => connect(base, ADA)));
        let done = 0;
        const until = performance.now() + THROUGHPUT_MS;
        await Promise.all(
          sessions.map(async (s) => {
            while (performance.now() < until) {
              await timed(() => callWith(base, path, s.sessionId, as(ADA)));
              done++;
            }
          }),
        );
        await Promise.all(sessions.map((s) => s.client.close()));
        return (done * 1000) / THROUGHPUT_MS;
      };
      const rates = { off: [] as number[], on: [] as number[] };
      for (let round = 0; round < 2; round++) {
        rates.off.push(await throughput(off.base));
        rates.on.push(await throughput(a.base));
      }
      const best = (xs: number[]) => Math.max(...xs);
      const extra = reopen.map((r, i) => r - live[i]!);
      return {
        sessions: SESSIONS,
        initialize_rtt_p50_ms: pct(init, 50),
        initialize_rtt_p95_ms: pct(init, 95),
        live_call_p50_ms: pct(live, 50),
        reopened_call_p50_ms: pct(reopen, 50),
        reopened_call_p95_ms: pct(reopen, 95),
        table_lookup_p50_ms: pct(lookup, 50),
        table_lookup_p95_ms: pct(lookup, 95),
        reopen_cost_p50_ms: pct(extra, 50),
        reopen_cost_p95_ms: pct(extra, 95),
        /** What re-opening costs beyond the call, in initialize round trips (the lookup included). */
        reopen_cost_in_initializes_p50: Math.round((pct(extra, 50) / pct(init, 50)) * 100) / 100,
        /** The same, less the table lookup: what MetaMCP is asked (one initialize, the notification pipelined). */
        reopen_cost_less_lookup_in_initializes_p50:
          Math.round(((pct(extra, 50) - pct(lookup, 50)) / pct(init, 50)) * 100) / 100,
        steady_off_p50_ms: pct(steadyOff, 50),
        steady_on_p50_ms: pct(steadyOn, 50),
        steady_off_p95_ms: pct(steadyOff, 95),
        steady_on_p95_ms: pct(steadyOn, 95),
        steady_delta_p50_ms: Math.round((pct(steadyOn, 50) - pct(steadyOff, 50)) * 100) / 100,
        throughput_off_per_s: Math.round(best(rates.off)),
        throughput_on_per_s: Math.round(best(rates.on)),
        /** On against off, best of two rounds each (negative: on was slower). */
        throughput_change_pct: Math.round((best(rates.on) / best(rates.off) - 1) * 1000) / 10,
      };
    } finally {
      for (const close of closers) await close();
      await db.stop();
    }
  },
};
export default bench;
