import { randomUUID } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import type { Router } from "../../src/runtime/router.js";
import { IN_FLIGHT_MESSAGE, SessionContinuity } from "../../src/runtime/session-continuity.js";
import {
  ensureSessionTable,
  SESSION_TABLE,
  SessionStore,
  sessionKey,
} from "../../src/runtime/session-store.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";
import {
  ADA,
  as,
  BOB,
  callWith,
  connect,
  SECRET,
  startRouter,
  startUpstreamShapedBackend,
  text,
  type UpstreamShape,
} from "../support/upstream-shaped-backend.js";

/**
 * Issue 25: streamable HTTP sessions that survive MetaMCP's restarts and move between the app's instances
 * (docs/scaling.md). Real parts: an embedded PostgreSQL with Lakebase's permissions holds the session table;
 * the backend behaves as upstream MetaMCP's public endpoints (test/support/upstream-shaped-backend.ts) and
 * is killed and started again as a process restart does (every session gone); the clients are the real MCP
 * SDK's, with no re-initialize logic of their own.
 */

const SCHEMA = "metamcp_app";
const PASSWORD = "continuity-test-password";
let db: LakebaseLikePostgres;
let admin: pg.Client;

beforeAll(async () => {
  db = await startLakebaseLikePostgres();
  await db.setPassword(PASSWORD, 3600);
  const c = new pg.Client({ connectionString: db.roleUrl(PASSWORD) });
  await c.connect();
  await c.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
  expect((await ensureSessionTable(c, SCHEMA)).created).toBe(true);
  expect((await ensureSessionTable(c, SCHEMA)).created).toBe(false);
  await c.end();
  admin = new pg.Client({ connectionString: db.adminUrl(db.database) });
  await admin.connect();
}, 60_000);
afterAll(async () => {
  await admin?.end();
  await db?.stop();
});

/** One instance of the app: its own MetaMCP (backend) and router, the shared database. */
interface Instance {
  backend: UpstreamShape;
  router: Router;
  url: string;
  store: SessionStore;
  continuity: SessionContinuity;
  /** What the supervisor counts: bumped at a kill (the exit) and at the start. */
  generation: number;
  restartBackend(): Promise<void>;
  close(): Promise<void>;
}

async function startInstance(idleMs = 60_000, touchEveryMs?: number): Promise<Instance> {
  const backend = await startUpstreamShapedBackend();
  const store = new SessionStore({
    connection: { connectionString: db.roleUrl(PASSWORD) },
    schema: SCHEMA,
    idleMs,
  });
  const instance = { generation: 0 } as Instance;
  const continuity = new SessionContinuity({
    store,
    backendPort: backend.port,
    generation: () => instance.generation,
    identitySecret: SECRET,
    backendWaitMs: 10_000,
    touchEveryMs,
  });
  const { router, url } = await startRouter(backend.port, { continuity, sessionIdleMs: idleMs });
  return Object.assign(instance, {
    backend,
    router,
    url,
    store,
    continuity,
    restartBackend: async () => {
      await backend.kill();
      instance.generation++;
      await backend.start();
      instance.generation++;
    },
    close: async () => {
      await router.close(100);
      continuity.close();
      await store.close();
      await backend.kill();
    },
  });
}

const instances: Instance[] = [];
afterEach(async () => {
  await Promise.all(instances.splice(0).map((i) => i.close()));
});
const instance = async (idleMs?: number, touchEveryMs?: number) => {
  const i = await startInstance(idleMs, touchEveryMs);
  instances.push(i);
  return i;
};

/** A client whose consecutive requests go to the instances in turn (the proxy's affinity is best-effort). */
async function connectAlternating(urls: string[], p: typeof ADA) {
  let n = 0;
  const hits: string[] = [];
  const client = new Client({ name: `client-of-${p.email}`, version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${urls[0]}/metamcp/${p.endpoint}/mcp`), {
    requestInit: { headers: as(p) },
    fetch: (input, init) => {
      const base = urls[n++ % urls.length]!;
      hits.push(base);
      const u = new URL(String(input instanceof Request ? input.url : input));
      return fetch(`${base}${u.pathname}${u.search}`, init);
    },
  });
  await client.connect(transport);
  return { client, transport, sessionId: transport.sessionId!, hits };
}

describe("a session survives MetaMCP's restarts (one instance)", () => {
  it("a client calling continuously while MetaMCP is killed and started again 3 times: no call fails", async () => {
    const app = await instance();
    const ada = await connect(app.url, ADA);
    const failures: string[] = [];
    let ok = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
          ok++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    try {
      for (let round = 0; round < 3; round++) {
        const before = ok;
        await waitFor(() => (ok >= before + 5 ? true : undefined), { timeoutMs: 10_000, what: "calls" });
        await app.restartBackend();
        const after = ok;
        await waitFor(() => (ok >= after + 5 ? true : undefined), {
          timeoutMs: 10_000,
          what: "calls after the restart",
        });
      }
    } finally {
      running = false;
      await loop;
    }
    // Calls are sequential: at most the one in flight at each kill may fail, and only with the clear message.
    expect(failures.length).toBeLessThanOrEqual(3);
    for (const f of failures) expect(f).toContain(IN_FLIGHT_MESSAGE);
    expect(ada.transport.sessionId).toBe(ada.sessionId); // the client never saw another id
    await ada.client.close();
  });

  it("a call in flight when MetaMCP dies fails once, clearly, at once; the next one succeeds", async () => {
    const app = await instance();
    const ada = await connect(app.url, ADA);
    const slow = ada.client.callTool({ name: "slow", arguments: {} });
    await waitFor(() => (app.backend.slowWaiting > 0 ? true : undefined), { timeoutMs: 5000, what: "slow" });
    const t0 = Date.now();
    await app.backend.kill();
    app.generation++;
    await expect(slow).rejects.toThrow(IN_FLIGHT_MESSAGE);
    expect(Date.now() - t0).toBeLessThan(5000); // not the client's 60 s request timeout
    await app.backend.start();
    app.generation++;
    expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    app.backend.releaseSlow();
    await ada.client.close();
  });

  it("re-opening costs one initialize at MetaMCP, however many requests of the session arrive at once", async () => {
    const app = await instance();
    const ada = await connect(app.url, ADA);
    await app.restartBackend();
    const before = app.backend.opened;
    const results = await Promise.all(
      Array.from({ length: 8 }, () => ada.client.callTool({ name: "owner", arguments: {} })),
    );
    expect(results.map(text)).toEqual(Array(8).fill(ADA.endpoint));
    expect(app.backend.opened - before).toBe(1);
    await ada.client.close();
  });

  it("without the backend's generation, MetaMCP's own 404 fails one call and the next re-opens", async () => {
    const app = await instance();
    const ada = await connect(app.url, ADA);
    await app.backend.kill();
    await app.backend.start(); // generation unchanged: the router learns only from MetaMCP's answer
    await expect(ada.client.callTool({ name: "owner", arguments: {} })).rejects.toThrow(/Session not found/);
    expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    await ada.client.close();
  });

  it("SSE sessions do not survive: the stream ends, and a message to the old session gets a clear 404", async () => {
    const app = await instance();
    // The SDK's SSE client: its stream sees the end (its EventSource then connects again, as a new session).
    const client = new Client({ name: "sse-client", version: "1.0.0" });
    const transport = new SSEClientTransport(new URL(`${app.url}/metamcp/${ADA.endpoint}/sse`), {
      requestInit: { headers: as(ADA) },
      eventSourceInit: {
        fetch: (u, init) => fetch(u, { ...init, headers: { ...(init?.headers ?? {}), ...as(ADA) } }),
      },
    });
    const errors: string[] = [];
    transport.onerror = (err) => errors.push(err.message);
    await client.connect(transport);
    expect(text(await client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    // The same, raw: the session's id from the stream's first event.
    const stream = await fetch(`${app.url}/metamcp/${ADA.endpoint}/sse`, { headers: as(ADA) });
    const reader = stream.body!.getReader();
    let first = "";
    while (!first.includes("sessionId=")) first += new TextDecoder().decode((await reader.read()).value);
    const sessionId = /sessionId=([\w-]+)/.exec(first)![1]!;
    await app.restartBackend();
    const ended = await reader.read().then(
      (r) => r.done,
      () => true,
    );
    expect(ended).toBe(true);
    await waitFor(() => (errors.length > 0 ? true : undefined), { timeoutMs: 5000, what: "the SDK's error" });
    const res = await fetch(`${app.url}/metamcp/${ADA.endpoint}/message?sessionId=${sessionId}`, {
      method: "POST",
      headers: { ...as(ADA), "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(res.status).toBe(404);
    expect(await res.text()).toBe("Session not found");
    await client.close();
  });
});

describe("a session moves between the app's instances (one PostgreSQL)", () => {
  it("consecutive requests of one session alternate between two instances: every one succeeds", async () => {
    const [a, b] = [await instance(), await instance()];
    const ada = await connectAlternating([a.url, b.url], ADA);
    for (let i = 0; i < 10; i++)
      expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    expect(new Set(ada.hits).size).toBe(2);
    // Each instance's MetaMCP opened it once: A at the client's initialize, B at its first request there.
    expect(a.backend.opened).toBe(1);
    expect(b.backend.opened).toBe(1);
    // A restart of either instance's MetaMCP on the way changes nothing for the client.
    await b.restartBackend();
    await a.restartBackend();
    for (let i = 0; i < 4; i++)
      expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
    expect(ada.transport.sessionId).toBe(ada.sessionId);
    await ada.client.close();
  });

  it("a rolling deploy: two instances replaced one after the other while a client calls continuously: no call fails", async () => {
    const rotation = [(await instance()).url, (await instance()).url];
    const ada = await connectAlternating(rotation, ADA);
    const failures: string[] = [];
    let ok = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          expect(text(await ada.client.callTool({ name: "owner", arguments: {} }))).toBe(ADA.endpoint);
          ok++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    const calls = async (n: number) => {
      const from = ok;
      await waitFor(() => (ok >= from + n ? true : undefined), { timeoutMs: 10_000, what: `${n} calls` });
    };
    try {
      await calls(5);
      for (let slot = 0; slot < 2; slot++) {
        // As the platform does: out of rotation first, then replaced, then back in.
        const old = instances.find((i) => i.url === rotation[slot])!;
        rotation.splice(slot, 1);
        await calls(3);
        await old.close();
        instances.splice(instances.indexOf(old), 1);
        const fresh = await instance();
        rotation.splice(slot, 0, fresh.url);
        await calls(6);
      }
    } finally {
      running = false;
      await loop;
    }
    expect(failures).toEqual([]);
    expect(ada.transport.sessionId).toBe(ada.sessionId);
    // Both instances now running are new: each re-opened the session once.
    expect(instances).toHaveLength(2);
    for (const i of instances) expect(i.backend.opened).toBe(1);
    await ada.client.close();
  });

  it("Bob naming Ada's session on either instance gets exactly the unknown-session answer; nothing reaches MetaMCP", async () => {
    const [a, b] = [await instance(), await instance()];
    const ada = await connect(a.url, ADA);
    const shape = async (res: Response) => {
      const body = (await res.json()) as Record<string, unknown>;
      return { status: res.status, keys: Object.keys(body).sort(), error: body.error };
    };
    const unknown = await shape(await callWith(b.url, `/metamcp/${BOB.endpoint}/mcp`, randomUUID(), as(BOB)));
    expect(unknown).toEqual({
      status: 404,
      keys: ["error", "message", "timestamp"],
      error: "Session not found",
    });
    const seen = [a.backend.seen.length, b.backend.seen.length];
    for (const inst of [a, b])
      for (const [path, headers] of [
        [`/metamcp/${BOB.endpoint}/mcp`, as(BOB)], // Bob's own endpoint and key
        [`/metamcp/${ADA.endpoint}/mcp`, as(BOB)], // Ada's endpoint, Bob's key
        [`/metamcp/${ADA.endpoint}/mcp`, { ...as(BOB), "x-api-key": ADA.key }], // Ada's key, Bob's identity
      ] as const) {
        const res = await callWith(inst.url, path, ada.sessionId, headers);
        expect(await shape(res), `${inst.url}${path}`).toEqual(unknown);
      }
    expect([a.backend.seen.length, b.backend.seen.length]).toEqual(seen);
    // Ada herself, on the other instance: hers.
    const mine = await callWith(b.url, `/metamcp/${ADA.endpoint}/mcp`, ada.sessionId, as(ADA));
    expect(mine.status).toBe(200);
    expect(mine.headers.get("mcp-session-id")).toBe(ada.sessionId);
    expect(await mine.text()).toContain(ADA.endpoint);
    await ada.client.close();
  });

  it("the table holds no session id, only its hash; a DELETE on one instance ends the session on all", async () => {
    // touchEveryMs 0: the other instance checks the row at each request (60 s apart by default).
    const [a, b] = [await instance(60_000, 0), await instance(60_000, 0)];
    const ada = await connectAlternating([a.url, b.url], ADA);
    await ada.client.callTool({ name: "owner", arguments: {} });
    const rows = await admin.query(`SELECT * FROM ${SCHEMA}.${SESSION_TABLE}`);
    const dump = JSON.stringify(rows.rows);
    expect(dump).not.toContain(ada.sessionId);
    // Nor MetaMCP's own ids of it (B re-opened it under a new one).
    const backendIds = [...a.backend.http.keys(), ...b.backend.http.keys()];
    expect(backendIds.length).toBe(2);
    for (const id of backendIds) expect(dump).not.toContain(id);
    const row = rows.rows.find((r) => r.session_key === sessionKey(ada.sessionId));
    expect(row).toMatchObject({
      principal: expect.stringContaining(ADA.email),
      scope: `metamcp/${ADA.endpoint}`,
    });
    expect(row.init_params.clientInfo).toEqual({ name: `client-of-${ADA.email}`, version: "1.0.0" });
    await ada.transport.terminateSession();
    await waitFor(
      async () =>
        (
          await admin.query(`SELECT 1 FROM ${SCHEMA}.${SESSION_TABLE} WHERE session_key = $1`, [
            sessionKey(ada.sessionId),
          ])
        ).rowCount === 0
          ? true
          : undefined,
      { timeoutMs: 5000, what: "the row's removal" },
    );
    // Ended: neither instance serves it any more (the one that did not see the DELETE, once it checked).
    for (const inst of [a, b])
      await waitFor(
        async () =>
          (await callWith(inst.url, `/metamcp/${ADA.endpoint}/mcp`, ada.sessionId, as(ADA))).status === 404
            ? true
            : undefined,
        { timeoutMs: 5000, what: "the session's end everywhere" },
      );
    expect(a.router.sessions.size + b.router.sessions.size).toBe(0);
    await ada.client.close();
  });
});

describe("the session table", () => {
  it("idle rows are deleted by one instance at a time; a row another instance still uses is kept", async () => {
    const store = new SessionStore({
      connection: { connectionString: db.roleUrl(PASSWORD) },
      schema: SCHEMA,
      idleMs: 60_000,
    });
    try {
      const init = { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x" } };
      const [old, fresh] = [randomUUID(), randomUUID()];
      await store.put(old, { principal: "u:a", scope: "metamcp/e", init });
      await store.put(fresh, { principal: "u:a", scope: "metamcp/e", init });
      await admin.query(
        `UPDATE ${SCHEMA}.${SESSION_TABLE} SET last_used_at = now() - interval '2 minutes' WHERE session_key = $1`,
        [sessionKey(old)],
      );
      expect(await store.get(old)).toBeUndefined(); // past idle: not re-opened even before the sweep
      // An instance ending `fresh` for its own idleness leaves it: it was used (here) within the limit.
      await store.remove(fresh, true);
      expect(await store.get(fresh)).toMatchObject({ principal: "u:a", scope: "metamcp/e", init });
      // The sweep while another instance holds the sweep lock: skipped.
      const other = new pg.Client({ connectionString: db.roleUrl(PASSWORD) });
      await other.connect();
      await other.query("BEGIN");
      await other.query("SELECT pg_advisory_xact_lock($1)", [0x6d6d7373]);
      expect(await store.sweep()).toBeUndefined();
      await other.query("COMMIT");
      await other.end();
      expect(await store.sweep()).toBeGreaterThanOrEqual(1);
      const left = await admin.query(`SELECT session_key FROM ${SCHEMA}.${SESSION_TABLE}`);
      expect(left.rows.map((r) => r.session_key)).toContain(sessionKey(fresh));
      expect(left.rows.map((r) => r.session_key)).not.toContain(sessionKey(old));
    } finally {
      await store.close();
    }
  });
});
