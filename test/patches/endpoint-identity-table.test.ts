import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureSchema, searchPathOption } from "../../src/runtime/database.js";
import {
  describeEndpointIdentityTable,
  ENDPOINT_IDENTITY_TABLE,
  endpointIdentityChildEnv,
  ensureEndpointIdentityTable,
} from "../../src/runtime/endpoint-identity.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

/**
 * Our per-endpoint table, created by the runtime after upstream's migrations, as the Lakebase-like role
 * (CONNECT, CREATE only): in our schema, never in `public`; the endpoints of an upgraded app kept on keys.
 */
const SCHEMA = "metamcp_app";

describe("the runtime's endpoint-identity table (embedded PostgreSQL, Lakebase-like role)", () => {
  let pgs: LakebaseLikePostgres;
  const clients: pg.Client[] = [];
  const connect = async (schema = SCHEMA) => {
    const c = new pg.Client({ connectionString: pgs.roleUrl("pw-1"), options: searchPathOption(schema) });
    await c.connect();
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    pgs = await startLakebaseLikePostgres();
    await pgs.setPassword("pw-1", 3600);
  });
  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await pgs?.stop();
  });

  it("first start after the upgrade: created in our schema, every existing endpoint gets an explicit off row; later starts change nothing", async () => {
    const c = await connect();
    await ensureSchema(c, SCHEMA);
    // Upstream's endpoints table, as its migrations left it, with two endpoints.
    await c.query(
      `CREATE TABLE "${SCHEMA}".endpoints (uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL)`,
    );
    await c.query(`INSERT INTO "${SCHEMA}".endpoints (name) VALUES ('a'), ('b')`);
    // Two instances starting at once: one creates and snapshots, the other sees it done.
    const other = await connect();
    const [one, two] = await Promise.all([
      ensureEndpointIdentityTable(c, SCHEMA),
      ensureEndpointIdentityTable(other, SCHEMA),
    ]);
    expect([one.created, two.created].sort()).toEqual([false, true]);
    const first = one.created ? one : two;
    expect(first.keptOnKeys).toBe(2);
    expect(describeEndpointIdentityTable(first, SCHEMA)).toBe(
      `created ${SCHEMA}.${ENDPOINT_IDENTITY_TABLE} (per-endpoint Databricks identity); 2 existing endpoint(s) kept on API keys`,
    );
    const rows = await c.query(
      `SELECT accept_identity, updated_by FROM "${SCHEMA}".${ENDPOINT_IDENTITY_TABLE}`,
    );
    expect(rows.rows).toEqual([
      { accept_identity: false, updated_by: "upgrade" },
      { accept_identity: false, updated_by: "upgrade" },
    ]);
    const where = await c.query(`SELECT table_schema FROM information_schema.tables WHERE table_name = $1`, [
      ENDPOINT_IDENTITY_TABLE,
    ]);
    expect(where.rows).toEqual([{ table_schema: SCHEMA }]);

    // A new endpoint has no row (it follows the default); a deleted endpoint's row goes at the next start.
    await c.query(`INSERT INTO "${SCHEMA}".endpoints (name) VALUES ('new')`);
    await c.query(`DELETE FROM "${SCHEMA}".endpoints WHERE name = 'a'`);
    const again = await ensureEndpointIdentityTable(c, SCHEMA);
    expect(again).toEqual({ created: false, keptOnKeys: 0, rows: 1 });
    expect(describeEndpointIdentityTable(again, SCHEMA)).toBe(
      `${SCHEMA}.${ENDPOINT_IDENTITY_TABLE}: 1 endpoint(s) with an explicit identity choice`,
    );
  });

  it("a tree without an endpoints table (no MetaMCP endpoints yet): the table is created, nothing to keep", async () => {
    const c = await connect("other_schema");
    await ensureSchema(c, "other_schema");
    const r = await ensureEndpointIdentityTable(c, "other_schema");
    expect(r).toEqual({ created: true, keptOnKeys: 0, rows: 0 });
  });

  it("the app's default for new endpoints reaches MetaMCP only when the app sets it", () => {
    expect(endpointIdentityChildEnv({})).toEqual({});
    expect(endpointIdentityChildEnv({ METAMCP_ENDPOINT_IDENTITY_DEFAULT: "off" })).toEqual({
      METAMCP_ENDPOINT_IDENTITY_DEFAULT: "off",
    });
  });
});
