import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

describe("embedded PostgreSQL with a Lakebase-like role", () => {
  let db: LakebaseLikePostgres;
  beforeAll(async () => {
    db = await startLakebaseLikePostgres();
  });
  afterAll(async () => {
    await db?.stop();
  });

  it("refuses CREATE TABLE in public with Lakebase's error, allows CREATE SCHEMA", async () => {
    await db.setPassword("token-1", 60);
    const c = new pg.Client({ connectionString: db.roleUrl("token-1") });
    await c.connect();
    try {
      await expect(c.query("CREATE TABLE t (id int)")).rejects.toThrow("permission denied for schema public");
      await c.query("CREATE SCHEMA IF NOT EXISTS metamcp_app");
      await c.query("CREATE TABLE metamcp_app.t (id int)");
      const r = await c.query(
        "SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid WHERE relname = 't'",
      );
      expect(r.rows).toEqual([{ nspname: "metamcp_app" }]);
    } finally {
      await c.end();
    }
  });

  it("refuses a login once the password's validity has passed", async () => {
    await db.setPassword("token-2", -1);
    const c = new pg.Client({ connectionString: db.roleUrl("token-2") });
    await expect(c.connect()).rejects.toThrow(/password authentication failed/);
  });
});
