import { createHash, randomUUID } from "node:crypto";
import { type IncomingMessage, request } from "node:http";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { AuditObserver } from "../../src/runtime/audit-observer.js";
import type { AuditDbRow } from "../../src/runtime/audit-query.js";
import { ensureAuditTable } from "../../src/runtime/audit-table.js";
import { AuditWriter } from "../../src/runtime/audit-writer.js";
import { ensureSchema, searchPathOption } from "../../src/runtime/database.js";
import { createRouter, type Router } from "../../src/runtime/router.js";
import { ADA, as, type Backend, BOB, overSse, startBackend, streamable } from "../support/mcp-endpoints.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

/**
 * Issue 24, "Every tool call on the record": the router in front of a backend shaped like MetaMCP's public
 * endpoints (real MCP SDK servers, one map per transport, as in session-guard.test.ts), writing to an
 * embedded PostgreSQL as a Lakebase-like role. Two people, each with their own endpoint and key, call tools
 * with real SDK clients (Ada over streamable HTTP, Bob over SSE); the test plays the Apps proxy from 127.0.0.1.
 */

const SCHEMA = "metamcp_app";
const PASSWORD = "role-password-audit-1234";

interface Row extends AuditDbRow {
  id: string;
}

describe("every MCP request through the router is a row in databricks_tool_calls", () => {
  let db: LakebaseLikePostgres;
  let reader: pg.Client;
  let backend: Backend;
  let writer: AuditWriter;
  let router: Router;
  let url: string;
  const warnings: string[] = [];
  const connection = () => ({
    host: db.host,
    port: db.port,
    database: db.database,
    user: db.role,
    password: async () => PASSWORD,
    options: searchPathOption(SCHEMA),
  });
  const rows = async (where = "true", params: unknown[] = []) =>
    (
      await reader.query<Row>(
        `SELECT * FROM ${SCHEMA}.databricks_tool_calls WHERE ${where} ORDER BY id`,
        params,
      )
    ).rows;
  /** Waits until `check` holds for the rows matching `where`. */
  const rowsUntil = (what: string, where: string, params: unknown[], check: (rs: Row[]) => boolean) =>
    waitFor(
      async () => {
        await writer.flush();
        const rs = await rows(where, params);
        return check(rs) ? rs : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 50, what },
    );

  async function startRouter(mode: "off" | "hash", extra: Partial<Parameters<typeof createRouter>[0]> = {}) {
    const audit = new AuditObserver({ sink: writer, arguments: mode });
    const r = createRouter({
      backendPort: backend.port,
      frontendPort: 1,
      trustedProxyAddresses: ["127.0.0.1"],
      audit,
      ...extra,
    });
    r.ready = true;
    await new Promise<void>((res) => r.server.listen(0, "0.0.0.0", () => res()));
    return { router: r, url: `http://127.0.0.1:${(r.server.address() as AddressInfo).port}` };
  }

  beforeAll(async () => {
    db = await startLakebaseLikePostgres();
    await db.setPassword(PASSWORD, 3600);
    const setup = new pg.Client(connection());
    await setup.connect();
    await ensureSchema(setup, SCHEMA);
    // MetaMCP's own tables, as far as the audit reads them (an endpoint's namespace).
    await setup.query(`CREATE TABLE ${SCHEMA}.namespaces (uuid uuid PRIMARY KEY, name text NOT NULL)`);
    await setup.query(
      `CREATE TABLE ${SCHEMA}.endpoints (uuid uuid PRIMARY KEY, name text NOT NULL, namespace_uuid uuid NOT NULL)`,
    );
    const ns = randomUUID();
    await setup.query(`INSERT INTO ${SCHEMA}.namespaces VALUES ($1, 'ada-tools')`, [ns]);
    await setup.query(`INSERT INTO ${SCHEMA}.endpoints VALUES ($1, $2, $3)`, [
      randomUUID(),
      ADA.endpoint,
      ns,
    ]);
    expect((await ensureAuditTable(setup, SCHEMA)).created).toBe(true);
    expect((await ensureAuditTable(setup, SCHEMA)).created).toBe(false);
    await setup.end();
    reader = new pg.Client(connection());
    reader.on("error", () => {}); // the last test stops the database under it
    await reader.connect();
    backend = await startBackend();
    writer = new AuditWriter({
      connection: connection(),
      schema: SCHEMA,
      retentionDays: 90,
      flushEveryMs: 50,
      warnEveryMs: 0,
      warn: (m) => warnings.push(m),
    });
    writer.start();
    ({ router, url } = await startRouter("off"));
  }, 60_000);
  afterAll(async () => {
    for (const release of backend?.slow ?? []) release();
    await router?.close(100);
    backend?.server.close();
    await writer?.close(1000);
    await reader?.end().catch(() => {});
    await db?.stop();
  });

  it("two people, streamable HTTP and SSE: every request is a row with the right person, endpoint, tool and outcome", async () => {
    const ada = await streamable(url, ADA);
    const bob = await overSse(url, BOB);
    try {
      expect((await ada.client.listTools()).tools.map((t) => t.name)).toContain("tools__echo");
      await ada.client.callTool({ name: "tools__echo", arguments: { text: "secret plans" } });
      const failed = await ada.client.callTool({ name: "tools__fail", arguments: {} });
      expect(failed.isError).toBe(true);
      await bob.client.callTool({ name: "tools__echo", arguments: { text: "bob's" } });
      await bob.client.callTool({ name: "tools__fail", arguments: {} });

      const adas = await rowsUntil("Ada's 4 rows", "principal = $1", [ADA.email], (rs) => rs.length >= 4);
      expect(adas.map((r) => [r.method, r.server, r.tool, r.outcome])).toEqual([
        ["initialize", null, null, "ok"],
        ["tools/list", null, null, "ok"],
        ["tools/call", "tools", "echo", "ok"],
        ["tools/call", "tools", "fail", "tool_error"],
      ]);
      for (const r of adas) {
        expect(r.endpoint).toBe(ADA.endpoint);
        expect(r.namespace).toBe("ada-tools"); // from MetaMCP's endpoints table
        expect(r.client).toBe("agent-of-ada/2.1.0");
        expect(r.session).toMatch(/^[A-Za-z0-9_-]{16}$/);
        expect(r.session).toBe(adas[0]!.session);
        expect(r.request_bytes).toBeGreaterThan(0);
        expect(r.response_bytes).toBeGreaterThan(0);
        expect(r.duration_ms).toBeGreaterThanOrEqual(0);
        expect(r.arguments).toBeNull(); // METAMCP_AUDIT_ARGUMENTS=off, the default
      }
      expect(adas[3]!.error).toBe("the database said no");

      // Bob's answers come on his SSE stream, matched by JSON-RPC id.
      const bobs = await rowsUntil("Bob's 3 rows", "principal = $1", [BOB.email], (rs) => rs.length >= 3);
      expect(bobs.map((r) => [r.method, r.tool, r.outcome, r.endpoint, r.client])).toEqual([
        ["initialize", null, "ok", BOB.endpoint, "agent-of-bob/3.0.0"],
        ["tools/call", "echo", "ok", BOB.endpoint, "agent-of-bob/3.0.0"],
        ["tools/call", "fail", "tool_error", BOB.endpoint, "agent-of-bob/3.0.0"],
      ]);
      expect(bobs[0]!.namespace).toBeNull(); // no MetaMCP endpoint row names it
      expect(bobs[1]!.response_bytes).toBeGreaterThan(0);
      expect(bobs[0]!.session).not.toBe(adas[0]!.session);
    } finally {
      await ada.client.close();
      await bob.client.close();
    }
  });

  it("a streamable HTTP endpoint answering JSON: rows too; a JSON-RPC error is protocol_error", async () => {
    const bob = await streamable(url, BOB);
    try {
      await bob.client.callTool({ name: "tools__echo", arguments: { text: "json" } });
      await expect(bob.client.callTool({ name: "no_such_tool", arguments: {} })).resolves.toBeDefined();
      const rs = await rowsUntil(
        "Bob's streamable rows",
        "principal = $1 AND client = 'agent-of-bob/2.1.0'",
        [BOB.email],
        (x) => x.length >= 3,
      );
      expect(rs.map((r) => [r.method, r.tool, r.outcome])).toEqual([
        ["initialize", null, "ok"],
        ["tools/call", "echo", "ok"],
        // The SDK server answers an unknown tool as a tool error (isError) in 1.2x; a JSON-RPC error otherwise.
        ["tools/call", "no_such_tool", expect.stringMatching(/^(tool_error|protocol_error)$/)],
      ]);
    } finally {
      await bob.client.close();
    }
  });

  it("a call whose client goes away before the answer is `cut`, on both transports", async () => {
    const ada = await streamable(url, ADA);
    const bob = await overSse(url, BOB);
    try {
      // Streamable: the client's HTTP request is aborted while the tool runs.
      const abort = new AbortController();
      const pending = fetch(`${url}/metamcp/${ADA.endpoint}/mcp`, {
        method: "POST",
        signal: abort.signal,
        headers: {
          ...as(ADA),
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-session-id": ada.sessionId,
          "mcp-protocol-version": "2025-06-18",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 99,
          method: "tools/call",
          params: { name: "tools__slow" },
        }),
      }).catch(() => undefined);
      const before = backend.slow.length;
      await waitFor(() => (backend.slow.length > before ? true : undefined), {
        timeoutMs: 5000,
        intervalMs: 20,
        what: "the slow tool to start",
      });
      abort.abort();
      await pending;
      const cut = await rowsUntil(
        "Ada's cut row",
        "principal = $1 AND outcome = 'cut'",
        [ADA.email],
        (x) => x.length >= 1,
      );
      expect(cut[0]).toMatchObject({ method: "tools/call", tool: "slow", endpoint: ADA.endpoint });
      expect(cut[0]!.error).toMatch(/client went away/);

      // SSE: the session's stream closes while the call waits for its answer.
      const n = backend.slow.length;
      const call = bob.client.callTool({ name: "tools__slow", arguments: {} }).catch(() => undefined);
      await waitFor(() => (backend.slow.length > n ? true : undefined), {
        timeoutMs: 5000,
        intervalMs: 20,
        what: "Bob's slow tool to start",
      });
      await bob.client.close();
      await call;
      const bobCut = await rowsUntil(
        "Bob's cut row",
        "principal = $1 AND outcome = 'cut'",
        [BOB.email],
        (x) => x.length >= 1,
      );
      expect(bobCut[0]).toMatchObject({ method: "tools/call", tool: "slow", endpoint: BOB.endpoint });
    } finally {
      for (const release of backend.slow.splice(0)) release();
      await ada.client.close();
      await bob.client.close().catch(() => {});
    }
  });

  it("attacker: nobody writes rows in someone else's name, and no row holds a session id or a key", async () => {
    const ada = await streamable(url, ADA);
    try {
      // Bob names Ada's session: refused, on his own name, without her session.
      const res = await fetch(`${url}/metamcp/${ADA.endpoint}/mcp`, {
        method: "POST",
        headers: {
          ...as(BOB),
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          "mcp-session-id": ada.sessionId,
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 5,
          method: "tools/call",
          params: { name: "tools__echo" },
        }),
      });
      expect(res.status).toBe(404);
      // A process on the app's host (not the proxy: another loopback address) claims to be Ada.
      const spoofed = await new Promise<number>((resolve, reject) => {
        const body = JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "initialize",
          params: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            clientInfo: { name: "spoof", version: "1" },
          },
        });
        const r = request(
          {
            host: "127.0.0.1",
            port: (router.server.address() as AddressInfo).port,
            localAddress: "127.0.0.3",
            method: "POST",
            path: `/metamcp/${BOB.endpoint}/mcp`,
            headers: {
              "x-forwarded-email": ADA.email,
              "x-api-key": BOB.key,
              "content-type": "application/json",
              accept: "application/json, text/event-stream",
            },
          },
          (answer: IncomingMessage) => {
            answer.resume();
            resolve(answer.statusCode ?? 0);
          },
        );
        r.on("error", reject);
        r.end(body);
      });
      expect(spoofed).toBe(200);
      const refused = await rowsUntil("Bob's refused row", "outcome = 'refused'", [], (x) => x.length >= 1);
      expect(refused[0]).toMatchObject({
        principal: BOB.email,
        endpoint: ADA.endpoint,
        method: "tools/call",
      });
      expect(refused[0]!.session).toBeNull();
      const spoof = await rowsUntil("the spoofed row", "client = 'spoof/1'", [], (x) => x.length >= 1);
      expect(spoof[0]!.principal).toBe("anonymous");
      expect(await rows("principal = $1 AND endpoint = $2", [ADA.email, BOB.endpoint])).toEqual([]);

      const all = JSON.stringify(await rows());
      // Ada's session id and MetaMCP's own id of it, at least.
      const ids = [...backend.http.keys(), ...backend.sse.keys(), ada.sessionId];
      expect(ids.filter((id) => typeof id === "string" && id.length >= 8).length).toBeGreaterThanOrEqual(2);
      for (const id of ids) expect(all).not.toContain(id);
      for (const key of [ADA.key, BOB.key]) expect(all).not.toContain(key);
    } finally {
      await ada.client.close();
    }
  });

  it("METAMCP_AUDIT_ARGUMENTS=hash: a SHA-256 of the arguments, never them", async () => {
    const hashed = await startRouter("hash");
    try {
      const ada = await streamable(hashed.url, ADA);
      await ada.client.callTool({ name: "tools__echo", arguments: { text: "hash me" } });
      await ada.client.close();
      const rs = await rowsUntil(
        "the hashed row",
        "principal = $1 AND arguments IS NOT NULL",
        [ADA.email],
        (x) => x.length >= 1,
      );
      const expected = createHash("sha256")
        .update(JSON.stringify({ text: "hash me" }))
        .digest("hex");
      expect(rs[0]!.arguments).toBe(`sha256:${expected}`);
      expect(JSON.stringify(await rows())).not.toContain("hash me");
    } finally {
      await hashed.router.close(100);
    }
  });

  it("attacker: a NUL or a lone surrogate in what a client names loses nobody's rows, its own included", async () => {
    // PostgreSQL refuses a NUL in text, and a batch is one INSERT: one such name would drop everyone's rows in it.
    const before = writer.stats().dropped;
    const adaEcho = "principal = $1 AND server = 'tools' AND tool = 'echo'";
    await writer.flush();
    const adaEchoes = (await rows(adaEcho, [ADA.email])).length;
    const post = (headers: Record<string, string>, body: object) =>
      fetch(`${url}/metamcp/${BOB.endpoint}/mcp`, {
        method: "POST",
        headers: {
          ...as(BOB),
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
          ...headers,
        },
        body: JSON.stringify(body),
      });
    const ada = await streamable(url, ADA);
    try {
      const init = await post(
        {},
        {
          jsonrpc: "2.0",
          id: 1,
          method: "initialize",
          params: {
            protocolVersion: "2025-06-18",
            capabilities: {},
            clientInfo: { name: "evil\u0000client\ud800", version: "1" },
          },
        },
      );
      expect(init.status).toBe(200);
      await init.text();
      const session = init.headers.get("mcp-session-id") ?? "";
      // Both in flight together, so their rows meet in one batch.
      const [bad] = await Promise.all([
        post(
          { "mcp-session-id": session, "mcp-protocol-version": "2025-06-18" },
          {
            jsonrpc: "2.0",
            id: 2,
            method: "tools/call",
            params: { name: "nul\u0000tool\udfff", arguments: {} },
          },
        ).then(async (r) => {
          await r.text();
          return r.status;
        }),
        ada.client.callTool({ name: "tools__echo", arguments: { text: "beside the NUL" } }),
      ]);
      expect(bad).toBe(200);
      const bobs = await rowsUntil("Bob's rows", "principal = $1 AND client LIKE 'evil%'", [BOB.email], (x) =>
        x.some((r) => r.method === "tools/call"),
      );
      expect(bobs.find((r) => r.method === "tools/call")!.tool).toBe("nul\ufffdtool\ufffd");
      expect(bobs[0]!.client).toBe("evil\ufffdclient\ufffd/1");
      await rowsUntil("Ada's call beside it", adaEcho, [ADA.email], (x) => x.length > adaEchoes);
      expect(writer.stats().dropped).toBe(before);
    } finally {
      await ada.client.close();
    }
  });

  it("retention deletes rows older than METAMCP_AUDIT_DAYS, and only those", async () => {
    await reader.query(
      `INSERT INTO ${SCHEMA}.databricks_tool_calls (called_at, principal, method, duration_ms, outcome, request_bytes)
       VALUES (now() - interval '91 days', 'old@example.com', 'tools/call', 1, 'ok', 10),
              (now() - interval '89 days', 'recent@example.com', 'tools/call', 1, 'ok', 10)`,
    );
    expect(await writer.enforceRetention()).toBe(1);
    expect(await rows("principal = 'old@example.com'")).toEqual([]);
    expect(await rows("principal = 'recent@example.com'")).toHaveLength(1);
  });

  it("the managers' route: Ada (a manager) reads everyone's calls; Bob, a forged Ada and nobody get 403", async () => {
    const managed = await startRouter("off", {
      managers: { emails: [ADA.email], principals: [] },
      auditRead: (filters) => writer.read(filters),
    });
    const route = `${managed.url}/metamcp/_databricks/audit`;
    try {
      await writer.flush();
      const ada = await fetch(`${route}?user=${encodeURIComponent(BOB.email)}&limit=2`, {
        headers: { "x-forwarded-email": ADA.email },
      });
      expect(ada.status).toBe(200);
      const { rows: got } = (await ada.json()) as { rows: { principal: string }[] };
      expect(got).toHaveLength(2);
      expect(got.every((r) => r.principal === BOB.email)).toBe(true);
      const all = (await (await fetch(route, { headers: { "x-forwarded-email": ADA.email } })).json()) as {
        rows: unknown[];
      };
      expect(all.rows.length).toBeGreaterThan(5);

      const bob = await fetch(route, { headers: as(BOB) });
      expect(bob.status).toBe(403);
      expect(await bob.text()).not.toContain("tools/call");
      expect((await fetch(route)).status).toBe(403);
      // A process on the app's host claiming Ada (another loopback address: not the proxy).
      const forged = await new Promise<number>((resolve, reject) => {
        const r = request(
          {
            host: "127.0.0.1",
            port: (managed.router.server.address() as AddressInfo).port,
            localAddress: "127.0.0.3",
            path: "/metamcp/_databricks/audit",
            headers: { "x-forwarded-email": ADA.email },
          },
          (answer) => {
            answer.resume();
            resolve(answer.statusCode ?? 0);
          },
        );
        r.on("error", reject);
        r.end();
      });
      expect(forged).toBe(403);
      const bad = await fetch(`${route}?since=yesterday`, { headers: { "x-forwarded-email": ADA.email } });
      expect(bad.status).toBe(400);
      const post = await fetch(route, { method: "POST", headers: { "x-forwarded-email": ADA.email } });
      expect(post.status).toBe(405);
    } finally {
      await managed.router.close(100);
    }
  });

  // Last: it stops the database.
  it("the database stopped mid-run: rows are dropped, counted and warned about; no call fails or slows", async () => {
    const ada = await streamable(url, ADA);
    try {
      const time = async (n: number) => {
        const ms: number[] = [];
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          const r = await ada.client.callTool({ name: "tools__echo", arguments: { text: `n${i}` } });
          expect(r.isError).toBeFalsy();
          ms.push(performance.now() - t0);
        }
        return ms.sort((a, b) => a - b)[Math.floor(n / 2)]!;
      };
      const healthy = await time(20);
      await writer.flush();
      const { dropped } = writer.stats();
      await db.stop();
      const outage = await time(20);
      await waitFor(
        async () => {
          await writer.flush();
          return writer.stats().dropped >= dropped + 20 ? true : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100, what: "the rows to be dropped" },
      );
      expect(warnings.join("\n")).toMatch(
        /audit: dropped \d+ row\(s\) \(the database refused them: .*\); \d+ dropped since start/,
      );
      // Generous for a busy machine: the write happens off the call's path, so an outage costs no waiting.
      expect(outage).toBeLessThan(healthy * 3 + 50);
    } finally {
      await ada.client.close();
    }
  }, 60_000);
});
