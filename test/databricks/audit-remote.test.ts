import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/audit/query.js";
import { ensureAuditTable } from "../../src/runtime/audit-table.js";
import { AuditWriter } from "../../src/runtime/audit-writer.js";
import { ensureSchema, searchPathOption } from "../../src/runtime/database.js";
import { createRouter, type Router } from "../../src/runtime/router.js";
import { type DatabricksWorld, M2M, startDatabricksWorld } from "../support/databricks-world.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

/**
 * `audit --target T`: the built CLI, the workspace emulator and its Apps proxy (tokens checked, identity
 * headers set as the platform's), and in front of it our real router with the audit's managers' route over an
 * embedded PostgreSQL. The DEFAULT profile (a service principal, OAuth M2M) is one of the app's managers here,
 * by its application id; profile `bob` (another developer) is not.
 */
const SCHEMA = "metamcp_app";
const PASSWORD = "role-password-remote-1234";

describe("audit --target reads a deployed app's audit through the app, for its managers only", () => {
  let root: string;
  let db: LakebaseLikePostgres;
  let writer: AuditWriter;
  let router: Router;
  let w: DatabricksWorld;

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), "mmdb-audit-remote-"));
    db = await startLakebaseLikePostgres();
    await db.setPassword(PASSWORD, 3600);
    const connection = {
      host: db.host,
      port: db.port,
      database: db.database,
      user: db.role,
      password: PASSWORD,
      options: searchPathOption(SCHEMA),
    };
    const setup = new pg.Client(connection);
    await setup.connect();
    await ensureSchema(setup, SCHEMA);
    await ensureAuditTable(setup, SCHEMA);
    await setup.query(
      `INSERT INTO ${SCHEMA}.databricks_tool_calls (called_at, principal, endpoint, server, tool, method, duration_ms, outcome, request_bytes)
       VALUES (now() - interval '2 hours', 'ada@example.com', 'adas', 'gh', 'search', 'tools/call', 12.5, 'ok', 100),
              (now() - interval '5 minutes', 'bob@example.com', 'bobs', 'fs', 'read', 'tools/call', 3, 'tool_error', 80)`,
    );
    await setup.end();
    writer = new AuditWriter({ connection, schema: SCHEMA, retentionDays: 90, warn: () => {} });
    router = createRouter({
      backendPort: 1, // the route never reaches MetaMCP
      frontendPort: 1,
      trustedProxyAddresses: ["127.0.0.1"],
      managers: { emails: [], principals: [M2M.id] },
      auditRead: (filters) => writer.read(filters),
    });
    router.ready = true;
    await new Promise<void>((r) => router.server.listen(0, "127.0.0.1", () => r()));
    w = await startDatabricksWorld(
      root,
      {},
      { appTarget: `http://127.0.0.1:${(router.server.address() as AddressInfo).port}` },
    );
    w.emulator.addApp("metamcp-dev-someone");
    // Bob's dev target names his own app (per-developer names); the stand-in proxy sends both to our router.
    w.emulator.addApp("metamcp-dev-bob-o-brien-smith");
  }, 120_000);
  afterAll(async () => {
    await w?.close();
    await router?.close(100);
    await writer?.close(1000);
    await db?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("a manager gets the rows, filtered; a non-manager is refused, exit 4, naming what to do", async () => {
    const r = await w.run(["--json", "audit", "--target", "dev"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const rows = (JSON.parse(r.stdout) as { rows: AuditRecord[] }).rows;
    expect(rows.map((x) => [x.principal, x.tool, x.outcome])).toEqual([
      ["bob@example.com", "read", "tool_error"],
      ["ada@example.com", "search", "ok"],
    ]);
    const recent = await w.run(["--json", "audit", "--target", "dev", "--since", "1h", "--tool", "fs__read"]);
    expect((JSON.parse(recent.stdout) as { rows: AuditRecord[] }).rows.map((x) => x.principal)).toEqual([
      "bob@example.com",
    ]);

    const bob = await w.run(["--json", "audit", "--target", "dev", "--profile", "bob"]);
    expect(bob.exitCode).toBe(4);
    expect((JSON.parse(bob.stdout) as { error: { code: string } }).error.code).toBe("audit_not_a_manager");
    expect(bob.stdout).not.toContain("ada@example.com");
    expect(bob.stderr).toMatch(/METAMCP_APP_MANAGERS/);
  });
});
