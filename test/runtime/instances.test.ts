import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureAuditTable } from "../../src/runtime/audit-table.js";
import { AuditWriter } from "../../src/runtime/audit-writer.js";
import { ensureSchema, searchPathOption } from "../../src/runtime/database.js";
import { ensureEndpointIdentityTable } from "../../src/runtime/endpoint-identity.js";
import { ensureSessionTable } from "../../src/runtime/session-store.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

/**
 * Several instances of the app on one Lakebase database (docs/scaling.md): what each instance does at start
 * and on a timer is safe when another does it at the same moment. Migrations under the advisory lock are
 * start.test.ts's ("run once when two instances start together"); the session table's idle sweep is
 * session-continuity.test.ts's.
 */
const SCHEMA = "metamcp_app";
const PASSWORD = "instances-test-password";
let db: LakebaseLikePostgres;
const clients: pg.Client[] = [];
const client = async () => {
  const c = new pg.Client({ connectionString: db.roleUrl(PASSWORD) });
  await c.connect();
  clients.push(c);
  return c;
};

beforeAll(async () => {
  db = await startLakebaseLikePostgres();
  await db.setPassword(PASSWORD, 3600);
  await (await client()).query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
}, 60_000);
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end().catch(() => {})));
  await db?.stop();
});

describe("several instances on one database", () => {
  it("our tables, created by instances starting together: each once, no instance fails", async () => {
    const starting = await Promise.all([client(), client(), client()]);
    const sessions = await Promise.all(starting.map((c) => ensureSessionTable(c, SCHEMA)));
    expect(sessions.filter((t) => t.created)).toHaveLength(1);
    const audits = await Promise.all(starting.map((c) => ensureAuditTable(c, SCHEMA)));
    expect(audits.filter((t) => t.created)).toHaveLength(1);
    // The endpoint-identity table and its upgrade snapshot (one row per endpoint there before): taken once.
    await starting[0]!.query(`CREATE TABLE ${SCHEMA}.endpoints (uuid uuid PRIMARY KEY, name text)`);
    await starting[0]!.query(
      `INSERT INTO ${SCHEMA}.endpoints VALUES ('00000000-0000-4000-8000-000000000001', 'a'), ('00000000-0000-4000-8000-000000000002', 'b')`,
    );
    const identity = await Promise.all(starting.map((c) => ensureEndpointIdentityTable(c, SCHEMA)));
    expect(identity.filter((t) => t.created)).toHaveLength(1);
    expect(identity.map((t) => t.rows)).toEqual([2, 2, 2]);
  });

  it("the schema, created by instances starting together: none fails (IF NOT EXISTS races in PostgreSQL)", async () => {
    // Before: the instance that lost the race got "duplicate key value violates unique constraint
    // pg_namespace_nspname_index" and stopped (seen in CI with `local up --instances 2`).
    for (let round = 0; round < 10; round++) {
      const schema = `race_${round}`;
      const starting = await Promise.all(
        [0, 1, 2].map(async () => {
          const c = new pg.Client({
            connectionString: db.roleUrl(PASSWORD),
            options: searchPathOption(schema),
          });
          await c.connect();
          clients.push(c);
          return c;
        }),
      );
      const paths = await Promise.all(starting.map((c) => ensureSchema(c, schema)));
      expect(paths.every((p) => p.startsWith(schema))).toBe(true);
    }
  });

  it("audit retention: one instance deletes at a time, another skips that round", async () => {
    const writer = new AuditWriter({
      connection: { connectionString: db.roleUrl(PASSWORD) },
      schema: SCHEMA,
      retentionDays: 90,
      warn: () => {},
    });
    try {
      const c = await client();
      await c.query(
        `INSERT INTO ${SCHEMA}.databricks_tool_calls (called_at, principal, method, duration_ms, outcome, request_bytes)
         VALUES (now() - interval '91 days', 'old@example.com', 'tools/call', 1, 'ok', 10)`,
      );
      // Another instance in the middle of its round: the retention lock is taken (audit-writer.ts RETENTION_LOCK).
      const other = await client();
      await other.query("BEGIN");
      await other.query("SELECT pg_advisory_xact_lock($1)", [0x6d6d6172]);
      expect(await writer.enforceRetention()).toBeUndefined();
      await other.query("COMMIT");
      expect(await writer.enforceRetention()).toBe(1);
    } finally {
      await writer.close(1000);
    }
  });
});
