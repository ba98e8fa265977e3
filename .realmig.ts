import pg from "pg";
import { createLogger } from "./src/log/logger.js";
import { ensureSchema, loadDrizzleMigrator, runMigrations, searchPathOption } from "./src/runtime/database.js";
import { startLakebaseLikePostgres } from "./test/support/postgres.js";
const be = "/work/walk/build/app/metamcp/apps/backend";
const m = loadDrizzleMigrator(be);
console.log("drizzle", m.version);
const db = await startLakebaseLikePostgres();
try {
  await db.setPassword("pw-xyz-123456789", 3600);
  const c = new pg.Client({ connectionString: db.roleUrl("pw-xyz-123456789"), options: searchPathOption("metamcp_app") });
  await c.connect();
  await ensureSchema(c, "metamcp_app");
  const log = createLogger({ json: true, tag: "t" });
  console.log(await runMigrations(c, { migrationsFolder: `${be}/drizzle`, schema: "metamcp_app", log }));
  console.log(await runMigrations(c, { migrationsFolder: `${be}/drizzle`, schema: "metamcp_app", log }));
  const t = await c.query("select count(*) from information_schema.tables where table_schema='metamcp_app'");
  const pub = await c.query("select count(*) from information_schema.tables where table_schema='public'");
  console.log("tables in schema", t.rows[0], "public", pub.rows[0]);
  await c.end();
} finally { await db.stop(); }
