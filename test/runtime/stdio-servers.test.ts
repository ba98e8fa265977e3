// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${NAME} is literal text in these messages
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { clearSecrets } from "../../src/log/secrets.js";
import * as backendLists from "../../src/patches/server-env-module.js";
import { STDIO_POLICIES as BACKEND_POLICIES } from "../../src/patches/stdio-servers-module.js";
import { readRuntimeEnv } from "../../src/runtime/env.js";
import {
  describeStdioServerByOther,
  describeStdioSettings,
  NEVER_EXPANDABLE_NAMES,
  NEVER_EXPANDABLE_PREFIXES,
  parseManagers,
  STDIO_POLICIES,
  stdioChildEnv,
  stdioServersByOthers,
} from "../../src/runtime/stdio-servers.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

/** What the platform and our app.yaml give a healthy app (as test/runtime/env.test.ts). */
const GOOD: Record<string, string> = {
  DATABRICKS_APP_PORT: "8000",
  DATABRICKS_APP_NAME: "metamcp-dev",
  DATABRICKS_HOST: "adb-1234567890123456.7.azuredatabricks.net",
  DATABRICKS_CLIENT_ID: "6c0e1f9a-0000-4000-8000-000000000001",
  DATABRICKS_CLIENT_SECRET: "dose0123456789abcdef0123456789abcdef",
  DATABRICKS_WORKSPACE_ID: "1234567890123456",
  PGHOST: "instance-abc.database.cloud.databricks.com",
  PGDATABASE: "databricks_postgres",
  PGUSER: "6c0e1f9a-0000-4000-8000-000000000001",
  LAKEBASE_ENDPOINT: "projects/metamcp-dev/branches/production/endpoints/primary",
  BETTER_AUTH_SECRET: "Qm9vdHN0cmFwLXJlYWwtcmFuZG9tLXNlY3JldA==",
};
const SP = "0a1b2c3d-0000-4000-8000-00000000abcd";

function problemsOf(overrides: Record<string, string>): string {
  try {
    readRuntimeEnv({ ...GOOD, ...overrides }, "/app/runtime");
    return "";
  } catch (err) {
    return (err as Error).message;
  }
}

afterEach(() => clearSecrets());

describe("METAMCP_STDIO_SERVERS, METAMCP_APP_MANAGERS, METAMCP_SERVER_ENV_ALLOW at start", () => {
  it("default: managers; the list sorted into users, service principals and groups", () => {
    expect(readRuntimeEnv(GOOD, "/app/runtime").stdioPolicy).toBe("managers");
    const env = readRuntimeEnv(
      {
        ...GOOD,
        METAMCP_STDIO_SERVERS: "off",
        METAMCP_APP_MANAGERS: `Alice@Corp.example, ${SP}, Data Engineers`,
      },
      "/app/runtime",
    );
    expect(env.stdioPolicy).toBe("off");
    expect(env.appManagers).toEqual({
      emails: ["alice@corp.example"],
      principals: [SP],
      groups: ["Data Engineers"],
    });
  });

  it("refuses a policy it does not know, a malformed email, a malformed allow entry, and allow entries naming the app's secrets", () => {
    expect(problemsOf({ METAMCP_STDIO_SERVERS: "admins" })).toContain(
      'METAMCP_STDIO_SERVERS="admins" is not valid: one of managers, everyone, off',
    );
    expect(problemsOf({ METAMCP_APP_MANAGERS: "alice@corp.example,bob@@x" })).toContain(
      'METAMCP_APP_MANAGERS has entries that are not an email address: "bob@@x"',
    );
    expect(problemsOf({ METAMCP_SERVER_ENV_ALLOW: "GITHUB_TOKEN,MY KEY,*" })).toContain(
      'METAMCP_SERVER_ENV_ALLOW has entries that are not a variable name or a NAME_* prefix: "MY KEY", "*"',
    );
    const secrets = problemsOf({
      METAMCP_SERVER_ENV_ALLOW:
        "GITHUB_TOKEN,BETTER_AUTH_SECRET,DATABRICKS_*,PGPASSWORD,METAMCP_IDENTITY_SECRET,DATABASE_*",
    });
    expect(secrets).toContain(
      "names the app's own secrets, which a server's ${NAME} never reaches: BETTER_AUTH_SECRET, DATABRICKS_*, PGPASSWORD, METAMCP_IDENTITY_SECRET, DATABASE_*",
    );
    expect(secrets).not.toContain("GITHUB_TOKEN,");
    expect(
      problemsOf({ METAMCP_SERVER_ENV_ALLOW: "GITHUB_TOKEN, MY_*", METAMCP_STDIO_SERVERS: "everyone" }),
    ).toBe("");
  });

  it("the runtime and the backend module share one list of never-expandable names and one set of policies", () => {
    expect(NEVER_EXPANDABLE_NAMES).toEqual(backendLists.NEVER_EXPANDABLE_NAMES);
    expect(NEVER_EXPANDABLE_PREFIXES).toEqual(backendLists.NEVER_EXPANDABLE_PREFIXES);
    expect(STDIO_POLICIES).toEqual(BACKEND_POLICIES);
  });

  it("the backend gets the settings and the allowed variables' values, never a secret's", () => {
    const env = stdioChildEnv({
      METAMCP_SERVER_ENV_ALLOW: "GITHUB_TOKEN,MY_*",
      METAMCP_APP_MANAGERS: "alice@corp.example",
      GITHUB_TOKEN: "ghp_x",
      MY_A: "a",
      OTHER: "o",
      DATABRICKS_CLIENT_SECRET: "never",
    });
    expect(env).toEqual({
      METAMCP_STDIO_SERVERS: "managers",
      METAMCP_APP_MANAGERS: "alice@corp.example",
      METAMCP_SERVER_ENV_ALLOW: "GITHUB_TOKEN,MY_*",
      GITHUB_TOKEN: "ghp_x",
      MY_A: "a",
    });
  });

  it("says at start what a group entry means, and when nobody may", () => {
    expect(describeStdioSettings("managers", parseManagers("platform-admins"))).toEqual([
      "STDIO servers: nobody may create or change them: METAMCP_APP_MANAGERS names no user or service principal (set it, or METAMCP_STDIO_SERVERS=everyone|off)",
      "METAMCP_APP_MANAGERS entry \"platform-admins\" is a group: the app can't read a group's members (workspace SCIM gives a non-admin names and ids only), so its members are not managers for STDIO servers; list their emails",
    ]);
  });
});

describe("existing STDIO servers not made by a manager are reported at start (real PostgreSQL)", () => {
  let server: LakebaseLikePostgres;
  let client: pg.Client;

  beforeAll(async () => {
    server = await startLakebaseLikePostgres();
    await server.setPassword("role-password-1234", 3600);
    client = new pg.Client({ connectionString: server.roleUrl("role-password-1234") });
    await client.connect();
    await client.query(`CREATE SCHEMA app;
      CREATE TYPE app.mcp_server_type AS ENUM ('STDIO', 'SSE', 'STREAMABLE_HTTP');
      CREATE TABLE app.users (id text PRIMARY KEY, email text NOT NULL);
      CREATE TABLE app.accounts (id text PRIMARY KEY, user_id text, provider_id text, account_id text);
      CREATE TABLE app.mcp_servers (name text, type app.mcp_server_type, user_id text);
      INSERT INTO app.users VALUES ('u-alice', 'alice@corp.example'), ('u-bob', 'bob@corp.example'),
        ('u-pw', 'manager@corp.example'), ('u-sp', '${SP}@sp.example');
      INSERT INTO app.accounts VALUES ('a1', 'u-alice', 'databricks', 'alice@corp.example'),
        ('a2', 'u-bob', 'databricks', 'bob@corp.example'), ('a3', 'u-pw', 'credential', 'u-pw'),
        ('a4', 'u-sp', 'databricks', '${SP}');
      INSERT INTO app.mcp_servers VALUES ('alice-shell', 'STDIO', 'u-alice'), ('bob-shell', 'STDIO', 'u-bob'),
        ('bob-web', 'STREAMABLE_HTTP', 'u-bob'), ('public-shell', 'STDIO', NULL), ('pw-shell', 'STDIO', 'u-pw'),
        ('sp-shell', 'STDIO', 'u-sp');
      CREATE SCHEMA old; CREATE TABLE old.mcp_servers (name text, type text);
      INSERT INTO old.mcp_servers VALUES ('legacy', 'STDIO'), ('web', 'SSE');`);
  }, 120_000);
  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  it("one warning per STDIO server whose owner is not a manager: another person's, a public one, a password-only account with a manager's email", async () => {
    const managers = parseManagers(`alice@corp.example,manager@corp.example,${SP},platform-admins`);
    const found = await stdioServersByOthers(client, "app", managers);
    expect(found).toEqual([
      { name: "bob-shell", owner: "bob@corp.example" },
      { name: "public-shell", owner: null },
      { name: "pw-shell", owner: "manager@corp.example" },
    ]);
    expect(found!.map(describeStdioServerByOther)[0]).toBe(
      'STDIO server "bob-shell" (owner: bob@corp.example) was not made by an app manager: it runs a process inside the app; review it in MetaMCP',
    );
  });

  it("a release without owners lists every STDIO server; a schema without the table reports nothing", async () => {
    expect(await stdioServersByOthers(client, "old", parseManagers("alice@corp.example"))).toEqual([
      { name: "legacy", owner: null },
    ]);
    expect(await stdioServersByOthers(client, "nothing_here", parseManagers(""))).toBeUndefined();
  });
});
