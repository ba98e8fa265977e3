import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import pg from "pg";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { retry } from "../retry.js";
import type { RuntimeEnv } from "./env.js";

/** `search_path` for every connection: our schema first, then public (extensions live there). */
export function searchPathOption(schema: string): string {
  return `-c search_path=${schema},public`;
}

export function sslFor(sslmode: string): pg.ClientConfig["ssl"] {
  if (sslmode === "disable" || sslmode === "allow") return false;
  if (sslmode === "verify-full" || sslmode === "verify-ca") return { rejectUnauthorized: true };
  // `require`/`prefer`: encrypted, as libpq does without verifying the certificate.
  return { rejectUnauthorized: false };
}

export function clientConfig(env: RuntimeEnv, password: () => string): pg.ClientConfig {
  return {
    host: env.pg.host,
    port: env.pg.port,
    database: env.pg.database,
    user: env.pg.user,
    password: async () => password(),
    ssl: sslFor(env.pg.sslmode),
    application_name: env.pg.appName,
    options: searchPathOption(env.schema),
    connectionTimeoutMillis: 10_000,
  };
}

/** The PostgreSQL (or socket) error itself: drizzle wraps it as the `cause` of a "Failed query: …". */
function rootPgError(err: unknown): { code?: string; message?: string } {
  let e = err as { code?: string; message?: string; cause?: unknown } | undefined;
  for (let i = 0; i < 5 && e && !e.code && e.cause; i++) e = e.cause as typeof e;
  return e ?? {};
}

export function describePgError(err: unknown): string {
  const e = rootPgError(err);
  return `${e.message ?? String(err)}${e.code ? ` (${e.code})` : ""}`;
}

/** SQLSTATEs and socket codes that mean "the server went away", not "the statement is wrong". */
const CONNECTION_LOST_CODES = new Set([
  "57P01", // admin_shutdown (a restart, a failover)
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now (starting up, shutting down)
  "08000",
  "08003",
  "08006",
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
]);

/** True when `err` says the database connection was lost (worth reconnecting), not that SQL failed. */
export function isConnectionLost(err: unknown): boolean {
  const e = rootPgError(err);
  if (e.code && CONNECTION_LOST_CODES.has(e.code)) return true;
  return /Connection terminated|Client has encountered a connection error|not queryable|connection timeout/i.test(
    e?.message ?? "",
  );
}

/** Connect errors that waiting cannot fix: refused credentials, no such database, TLS refused or untrusted. */
function connectProblem(err: unknown): "auth" | "tls" | undefined {
  const code = (err as { code?: string }).code;
  if (code === "28P01" || code === "28000" || code === "3D000") return "auth";
  // TLS refused or a certificate not accepted: waiting changes nothing (Lakebase always speaks TLS).
  if (/does not support SSL|certificate|self[- ]signed/i.test((err as Error).message ?? "")) return "tls";
  return undefined;
}

/** Connects, retrying while the server is not up yet (refused, starting); auth errors fail at once. */
export async function connectWithRetry(
  config: pg.ClientConfig,
  log: Logger,
  deadlineMs: number,
  signal?: AbortSignal,
): Promise<pg.Client> {
  const attempt = async () => {
    const client = new pg.Client(config);
    // Without a listener, a server that goes away between queries (a restart, a failover) is an
    // uncaught 'error' event: a crash with a raw stack. The query in flight fails on its own and the
    // caller reconnects; this only says what happened.
    client.on("error", (err) => log.warn(`the database connection was lost: ${describePgError(err)}`));
    try {
      await client.connect();
      return client;
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
  };
  try {
    return await retry(attempt, {
      firstWaitMs: 500,
      maxWaitMs: 5000,
      deadlineMs,
      signal,
      retryable: (err) => connectProblem(err) === undefined,
      onRetry: (err, waitMs) =>
        log.warn(`database not reachable yet: ${describePgError(err)}; retrying in ${waitMs / 1000} s`),
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    const problem = connectProblem(err);
    throw new UserError(
      "database_unreachable",
      `cannot connect to Lakebase at ${config.host}:${config.port}/${config.database} as ${config.user}: ${describePgError(err)}`,
      EXIT.databricks,
      problem === "auth"
        ? "check the app's database resource (PGUSER must be granted CAN_CONNECT_AND_CREATE)"
        : problem === "tls"
          ? "check PGSSLMODE and PGHOST: the app's Lakebase resource sets them (Lakebase requires TLS; verify-full needs a certificate this machine trusts)"
          : "is the Lakebase database running? (the app retried until its deadline)",
    );
  }
}

/** `CREATE SCHEMA IF NOT EXISTS`, then checks that this connection's search_path starts with it. */
export async function ensureSchema(client: pg.Client, schema: string): Promise<string> {
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  } catch (err) {
    if (isConnectionLost(err)) throw err;
    // Two instances starting together: PostgreSQL's IF NOT EXISTS is not atomic, so the one that loses the
    // race gets a unique violation on pg_namespace. The schema exists then; the checks below still apply.
    if ((err as { code?: string }).code === "23505") return await checkSchema(client, schema);
    throw new UserError(
      "schema_create_failed",
      `cannot create schema ${schema}: ${describePgError(err)}`,
      EXIT.databricks,
      "the app's database resource needs permission CAN_CONNECT_AND_CREATE",
    );
  }
  return await checkSchema(client, schema);
}

async function checkSchema(client: pg.Client, schema: string): Promise<string> {
  // A schema of that name made by someone else (another app, a person) exists but is not usable by us:
  // say so, instead of the confusing search_path check below.
  const own = await client.query<{ owner: string; me: string; usable: boolean }>(
    `SELECT pg_get_userbyid(nspowner) AS owner, current_user AS me,
            has_schema_privilege(nspname, 'USAGE') AND has_schema_privilege(nspname, 'CREATE') AS usable
       FROM pg_namespace WHERE nspname = $1`,
    [schema],
  );
  const o = own.rows[0];
  if (o && !o.usable) {
    throw new UserError(
      "schema_not_usable",
      `schema ${schema} exists but belongs to role ${o.owner}, and ${o.me} (PGUSER) may not use it (needs USAGE and CREATE on it)`,
      EXIT.databricks,
      `set METAMCP_DB_SCHEMA to a schema of the app's own, or have ${o.owner} run: GRANT USAGE, CREATE ON SCHEMA ${schema} TO "${o.me}"`,
    );
  }
  const r = await client.query<{ search_path: string; first: string | null }>(
    "SELECT current_setting('search_path') AS search_path, current_schema() AS first",
  );
  const row = r.rows[0]!;
  if (row.first !== schema) {
    throw new UserError(
      "search_path_wrong",
      `search_path is "${row.search_path}" (current schema ${row.first ?? "none"}), expected ${schema} first`,
      EXIT.bug,
    );
  }
  return row.search_path;
}

/** A fixed advisory-lock key: every instance of the app migrates under the same lock. */
export const MIGRATION_LOCK = 0x6d6d6462; // "mmdb"

/** What runMigrations needs of drizzle-orm: its node-postgres driver and that driver's migrator. */
export interface DrizzleMigrator {
  /** drizzle-orm's package.json version, for the log. */
  version: string;
  migrate(
    client: pg.Client,
    config: { migrationsFolder: string; migrationsSchema: string; migrationsTable: string },
  ): Promise<void>;
}

/**
 * Upstream's own drizzle-orm, loaded from the built backend's production node_modules (MetaMCP's backend
 * depends on drizzle-orm and pg; the app tree ships them). Not bundled into runtime/start.mjs: drizzle-orm
 * would be a third of the bundle for one function, and this way MetaMCP's migrations run with the drizzle
 * version upstream wrote them for. Resolved as the backend resolves it (Node's lookup from `fromDir`).
 */
export function loadDrizzleMigrator(fromDir: string): DrizzleMigrator {
  const fromBackend = createRequire(path.join(fromDir, "package.json"));
  let driver: { drizzle(client: pg.Client): unknown };
  let migrator: { migrate(db: unknown, config: object): Promise<void> };
  let version = "unknown";
  try {
    driver = fromBackend("drizzle-orm/node-postgres");
    migrator = fromBackend("drizzle-orm/node-postgres/migrator");
  } catch (err) {
    throw new UserError(
      "app_tree_incomplete",
      `the app tree's backend has no usable drizzle-orm (looked up from ${fromDir}: ${(err as Error).message.split("\n")[0]}); the runtime migrates MetaMCP's database with upstream's own drizzle-orm`,
      EXIT.input,
      "rebuild the app tree with `make build` (it installs the backend's production dependencies, drizzle-orm among them)",
    );
  }
  try {
    // drizzle-orm exports no ./package.json: read it beside the migrator (node-postgres/migrator.cjs).
    const pkg = path.join(
      path.dirname(fromBackend.resolve("drizzle-orm/node-postgres/migrator")),
      "../package.json",
    );
    version = (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
  } catch {
    // only for the log
  }
  return {
    version,
    migrate: (client, config) => migrator.migrate(driver.drizzle(client), config),
  };
}

/**
 * Upstream's (patched) migrations with drizzle's own migrator, journal in our schema, under an
 * advisory lock so instances starting together never race; a no-op when up to date. The migrator is
 * upstream's drizzle-orm from the backend beside `migrationsFolder` (`<backend>/drizzle`) unless given.
 */
export async function runMigrations(
  client: pg.Client,
  options: { migrationsFolder: string; schema: string; log: Logger; migrator?: DrizzleMigrator },
): Promise<{ applied: number; total: number }> {
  const migrator = options.migrator ?? loadDrizzleMigrator(path.dirname(options.migrationsFolder));
  await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
  try {
    const count = async () => {
      const r = await client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM information_schema.tables WHERE table_schema = $1 AND table_name = '__drizzle_migrations'`,
        [options.schema],
      );
      if (r.rows[0]?.n === "0") return 0;
      const c = await client.query<{ n: string }>(
        `SELECT count(*)::text AS n FROM "${options.schema}"."__drizzle_migrations"`,
      );
      return Number(c.rows[0]?.n ?? 0);
    };
    const before = await count();
    await migrator.migrate(client, {
      migrationsFolder: options.migrationsFolder,
      migrationsSchema: options.schema,
      migrationsTable: "__drizzle_migrations",
    });
    const after = await count();
    return { applied: after - before, total: after };
  } catch (err) {
    if (err instanceof UserError || isConnectionLost(err)) throw err;
    const denied = rootPgError(err).code === "42501";
    throw new UserError(
      "migration_failed",
      `migrations failed: ${describePgError(err)}`,
      denied ? EXIT.databricks : EXIT.bug,
      denied
        ? "the app's database role lacks a privilege the migration needs: check the app's database resource (CAN_CONNECT_AND_CREATE) and who owns the schema's objects"
        : "see the log lines above",
    );
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
  }
}

/**
 * Runs `sql` (a DELETE) in a transaction holding the advisory lock `lock`, unless another instance holds it:
 * with several instances, one does the cleanup and the others skip. Returns the rows deleted, or undefined
 * when skipped.
 */
export async function deleteAsOneInstance(
  pool: pg.Pool,
  lock: number,
  sql: string,
  params: unknown[],
): Promise<number | undefined> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const got = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_xact_lock($1) AS ok", [lock]);
    if (!got.rows[0]?.ok) {
      await client.query("ROLLBACK");
      return undefined;
    }
    const r = await client.query(sql, params);
    await client.query("COMMIT");
    return r.rowCount ?? 0;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}
