import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseOfExistingState } from "../../src/local/postgres.js";
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

  it("keeps a local state's data in the earlier default database; a new state uses the configured one", async () => {
    const pick = () => databaseOfExistingState(db.adminUrl(), { wanted: "metamcp", schema: "metamcp_app" });
    // db's database is databricks_postgres: no app schema there yet, so the configured database is used.
    const admin = new pg.Client({ connectionString: db.adminUrl(db.database) });
    await admin.connect();
    try {
      await admin.query("DROP SCHEMA IF EXISTS metamcp_app CASCADE");
      expect(await pick()).toBe("metamcp");
      // An earlier `local up` migrated into databricks_postgres: that state keeps its rows there.
      await admin.query("CREATE SCHEMA metamcp_app");
      expect(await pick()).toBe("databricks_postgres");
      // Once the configured database exists (a --fresh start, or set by hand), it wins.
      await admin.query("CREATE DATABASE metamcp");
      expect(await pick()).toBe("metamcp");
      await admin.query("DROP DATABASE metamcp");
    } finally {
      await admin.end();
    }
  });
});
