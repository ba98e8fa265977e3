import path from "node:path";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log/logger.js";
import { prepareUpstream } from "../../src/upstream/prepare.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";
import {
  createSyntheticUpstream,
  type SyntheticUpstream,
  TABLE_COUNTS,
} from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * The point of the patches, against a real PostgreSQL with Lakebase's permission model: the role may
 * CONNECT and CREATE on the database but owns nothing in `public`.
 */
describe("migrations against a Lakebase-like PostgreSQL", () => {
  const schema = "metamcp_app";
  let server: LakebaseLikePostgres;
  let upstream: SyntheticUpstream;
  let url: string;

  beforeAll(async () => {
    upstream = createSyntheticUpstream();
    server = await startLakebaseLikePostgres();
    const password = "role-password-1234";
    await server.setPassword(password, 3600);
    url = server.roleUrl(password);
  });
  afterAll(async () => {
    await server?.stop();
    upstream?.cleanup();
  });

  async function migrateAsRole(migrationsFolder: string, options: { searchPath?: string; journal?: string }) {
    const pool = new pg.Pool({
      connectionString: url,
      max: 1,
      ...(options.searchPath ? { options: `-c search_path=${options.searchPath}` } : {}),
    });
    try {
      await migrate(drizzle(pool), { migrationsFolder, migrationsSchema: options.journal });
    } finally {
      await pool.end();
    }
  }

  async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query<T>(sql, params)).rows;
    } finally {
      await client.end();
    }
  }

  it("unpatched upstream migrations fail with `permission denied for schema public`", async () => {
    const err = await migrateAsRole(path.join(upstream.dir, "apps/backend/drizzle"), {
      journal: "drizzle_unpatched",
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    const messages = [(err as Error).message, String((err as { cause?: Error }).cause?.message ?? "")].join(
      " ",
    );
    expect(messages).toContain("permission denied for schema public");
  });

  it("patched migrations run with drizzle's migrator and everything lives in the custom schema", async () => {
    const buildDir = path.join(tempDir(), "metamcp");
    const prepared = await prepareUpstream({
      repoUrl: upstream.url,
      ref: "main",
      buildDir,
      schema,
      cacheDir: tempDir(),
      overlayDir: path.join(PROJECT_ROOT, "overlay"),
      toolVersion: "test",
      log: silentLogger,
    });
    expect(prepared.manifest.patches.find((p) => p.id === "drizzle-schema")?.counts).toEqual(
      TABLE_COUNTS.head,
    );

    // As the runtime does: search_path = custom schema, then public; the journal in the custom schema.
    await migrateAsRole(path.join(buildDir, "apps/backend/drizzle"), {
      searchPath: `${schema},public`,
      journal: schema,
    });

    const tables = await query<{ schemaname: string; tablename: string }>(
      "select schemaname, tablename from pg_tables where schemaname in ($1, 'public') order by tablename",
      [schema],
    );
    expect(tables.filter((t) => t.schemaname === "public")).toEqual([]);
    expect(tables.map((t) => t.tablename).sort()).toEqual(
      [
        "__drizzle_migrations",
        "api_keys",
        "config",
        "endpoints",
        "mcp_servers",
        "namespaces",
        "tools",
        "users",
      ].sort(),
    );
    const enums = await query<{ nspname: string; typname: string }>(
      `select n.nspname, t.typname from pg_type t join pg_namespace n on n.oid = t.typnamespace
       where t.typtype = 'e' and n.nspname in ($1, 'public') order by t.typname`,
      [schema],
    );
    expect(enums).toEqual([
      { nspname: schema, typname: "mcp_server_type" },
      { nspname: schema, typname: "namespace_status" },
    ]);
    const constraints = await query<{ nspname: string; contype: string; target: string | null }>(
      `select n.nspname, c.contype, tn.nspname as target from pg_constraint c
       join pg_namespace n on n.oid = c.connamespace
       left join pg_class t on t.oid = c.confrelid left join pg_namespace tn on tn.oid = t.relnamespace
       where n.nspname in ($1, 'public')`,
      [schema],
    );
    expect(constraints.length).toBeGreaterThan(0);
    expect(constraints.every((c) => c.nspname === schema)).toBe(true);
    const fks = constraints.filter((c) => c.contype === "f");
    expect(fks).toHaveLength(4); // mcp_servers, tools, endpoints, api_keys
    expect(fks.every((c) => c.target === schema)).toBe(true);
    const journal = await query<{ n: string }>(
      `select count(*)::text as n from "${schema}"."__drizzle_migrations"`,
    );
    expect(journal[0]?.n).toBe("4");

    // Running the migrator again is a no-op (the journal is found in the custom schema).
    await migrateAsRole(path.join(buildDir, "apps/backend/drizzle"), {
      searchPath: `${schema},public`,
      journal: schema,
    });
    const again = await query<{ n: string }>(
      `select count(*)::text as n from "${schema}"."__drizzle_migrations"`,
    );
    expect(again[0]?.n).toBe("4");
  });
});
