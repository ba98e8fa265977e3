import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  appIdentityServersByOthers,
  describeAppIdentityServerByOther,
} from "../../src/runtime/databricks-tools/existing.js";
import { parseManagers } from "../../src/runtime/stdio-servers.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

const WS = "https://adb-1234567890123456.7.azuredatabricks.net";

describe("workspace servers that run as the app but no manager made are reported at start (real PostgreSQL)", () => {
  let server: LakebaseLikePostgres;
  let client: pg.Client;

  beforeAll(async () => {
    server = await startLakebaseLikePostgres();
    await server.setPassword("role-password-1234", 3600);
    client = new pg.Client({ connectionString: server.roleUrl("role-password-1234") });
    await client.connect();
    await client.query(`CREATE SCHEMA app;
      CREATE TABLE app.users (id text PRIMARY KEY, email text NOT NULL);
      CREATE TABLE app.accounts (id text PRIMARY KEY, user_id text, provider_id text, account_id text);
      CREATE TABLE app.mcp_servers (name text, type text, user_id text, url text);
      INSERT INTO app.users VALUES ('u-alice', 'alice@corp.example'), ('u-bob', 'bob@corp.example');
      INSERT INTO app.accounts VALUES ('a1', 'u-alice', 'databricks', 'alice@corp.example'),
        ('a2', 'u-bob', 'databricks', 'bob@corp.example');
      INSERT INTO app.mcp_servers VALUES
        ('alice-genie', 'STREAMABLE_HTTP', 'u-alice', '${WS}/api/2.0/mcp/genie/s1'),
        ('bob-functions', 'STREAMABLE_HTTP', 'u-bob', '${WS}/api/2.0/mcp/functions/main/tools'),
        ('bob-spelled', 'SSE', 'u-bob', 'HTTPS://ADB-1234567890123456.7.azuredatabricks.net:443/api/2.0/mcp/sql'),
        ('bob-per-person', 'STREAMABLE_HTTP', 'u-bob', '${WS}/api/2.0/mcp/genie/s1#identity=user'),
        ('bob-elsewhere', 'STREAMABLE_HTTP', 'u-bob', 'https://mcp.example/mcp'),
        ('bob-shell', 'STDIO', 'u-bob', NULL),
        ('public-sql', 'STREAMABLE_HTTP', NULL, '${WS}/api/2.0/mcp/sql');
      CREATE SCHEMA old; CREATE TABLE old.mcp_servers (name text, type text);`);
  }, 120_000);
  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  it("lists another person's and public ones, however the URL is spelled; not a manager's, per-person, other hosts or STDIO", async () => {
    const found = await appIdentityServersByOthers(client, "app", parseManagers("alice@corp.example"), WS);
    expect(found).toEqual([
      { name: "bob-functions", owner: "bob@corp.example" },
      { name: "bob-spelled", owner: "bob@corp.example" },
      { name: "public-sql", owner: null },
    ]);
    expect(describeAppIdentityServerByOther(found![0]!)).toBe(
      'Databricks workspace server "bob-functions" (owner: bob@corp.example) was not made by an app manager: it runs as the app\'s service principal, with its Unity Catalog grants; review it in MetaMCP',
    );
  });

  it("a table without urls reports none; no table reports nothing", async () => {
    expect(await appIdentityServersByOthers(client, "old", parseManagers(""), WS)).toEqual([]);
    expect(await appIdentityServersByOthers(client, "nothing_here", parseManagers(""), WS)).toBeUndefined();
  });
});
