import { createHash } from "node:crypto";
import pg from "pg";
import { deleteAsOneInstance, MIGRATION_LOCK } from "./database.js";

/**
 * `<schema>.databricks_mcp_sessions` (docs/scaling.md): what re-opening a streamable HTTP session at a
 * MetaMCP that never saw it needs — its owner, its endpoint, the client's initialize parameters — so a
 * session outlives a restart of MetaMCP's backend, of the app, and moves between the app's instances.
 *
 * The key is a hash of the session id, never the id: someone who can read the table learns who has
 * sessions on which endpoint, and when, but gets nothing to name one with (a request must carry the id
 * itself, and the owner's credentials on top). Backend session ids are not kept either: they belong to one
 * MetaMCP process of one instance and are useless anywhere else.
 *
 * Ours, not upstream's: created at every start after upstream's migrations under the same advisory lock
 * (as the audit table, audit-table.ts), so instances starting together never race on it.
 */
export const SESSION_TABLE = "databricks_mcp_sessions";

export function sessionTableName(schema: string): string {
  return `"${schema}"."${SESSION_TABLE}"`;
}

/** The row key of a session id: domain-separated, so it matches no other hash of the id we keep. */
export function sessionKey(sessionId: string): string {
  return createHash("sha256").update(`databricks_mcp_sessions\0${sessionId}`).digest("hex");
}

/** The parts of the client's `initialize` that MetaMCP's answer depends on (MCP lifecycle). */
export interface InitializeParams {
  protocolVersion: string;
  capabilities: Record<string, unknown>;
  clientInfo: Record<string, unknown>;
}

export interface StoredSession {
  principal: string;
  scope: string;
  init: InitializeParams;
  createdAt: Date;
  lastUsedAt: Date;
}

export async function ensureSessionTable(client: pg.Client, schema: string): Promise<{ created: boolean }> {
  const table = sessionTableName(schema);
  await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
  try {
    const before = await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [table]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
  session_key text PRIMARY KEY,
  principal text NOT NULL,
  scope text NOT NULL,
  protocol_version text NOT NULL,
  init_params jsonb NOT NULL,
  created_at timestamp with time zone NOT NULL DEFAULT now(),
  last_used_at timestamp with time zone NOT NULL DEFAULT now()
)`);
    await client.query(
      `CREATE INDEX IF NOT EXISTS "${SESSION_TABLE}_last_used_at" ON ${table} (last_used_at)`,
    );
    return { created: before.rows[0]?.t == null };
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
  }
}

/** What the router's continuity needs of the store (an interface: the router tests run without one too). */
export interface SessionStoreLike {
  put(sessionId: string, s: { principal: string; scope: string; init: InitializeParams }): Promise<void>;
  get(sessionId: string): Promise<StoredSession | undefined>;
  /** Marks it used; false when its row is gone (ended on another instance). */
  touch(sessionId: string): Promise<boolean>;
  remove(sessionId: string, onlyIfIdle?: boolean): Promise<void>;
}

export interface SessionStoreOptions {
  /** The runtime's connection settings (database.ts clientConfig: password read at each login). */
  connection: pg.ClientConfig;
  schema: string;
  /** METAMCP_SESSION_IDLE_MINUTES: a row unused for this long is deleted (by one instance at a time). */
  idleMs: number;
  /** How often idle rows are deleted (default a quarter of idleMs, at most 5 min). */
  sweepEveryMs?: number;
  warn?: (message: string) => void;
}

/** Its own advisory lock: one instance's DELETE of idle rows at a time, the others skip that round. */
const SWEEP_LOCK = 0x6d6d7373; // "mmss"

export class SessionStore implements SessionStoreLike {
  private readonly pool: pg.Pool;
  private readonly table: string;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: SessionStoreOptions) {
    this.table = sessionTableName(options.schema);
    this.pool = new pg.Pool({
      ...options.connection,
      max: 4,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: 5_000,
      // A request waits on a lookup: a database that hangs must fail it, not hold it for the proxy's 120 s.
      query_timeout: 10_000,
    });
    // A connection lost while idle (a restart, a failover): the next query opens a new one.
    this.pool.on("error", () => {});
  }

  async put(
    sessionId: string,
    s: { principal: string; scope: string; init: InitializeParams },
  ): Promise<void> {
    // DO NOTHING: a row, once there, keeps its owner (ids are MetaMCP's random UUIDs: a clash is a bug).
    await this.pool.query(
      `INSERT INTO ${this.table} (session_key, principal, scope, protocol_version, init_params)
       VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_key) DO NOTHING`,
      [sessionKey(sessionId), s.principal, s.scope, s.init.protocolVersion, JSON.stringify(s.init)],
    );
  }

  async get(sessionId: string): Promise<StoredSession | undefined> {
    const r = await this.pool.query<{
      principal: string;
      scope: string;
      init_params: InitializeParams;
      created_at: Date;
      last_used_at: Date;
    }>(
      `SELECT principal, scope, init_params, created_at, last_used_at FROM ${this.table}
       WHERE session_key = $1 AND last_used_at >= now() - make_interval(secs => $2)`,
      [sessionKey(sessionId), this.options.idleMs / 1000],
    );
    const row = r.rows[0];
    if (!row) return undefined;
    return {
      principal: row.principal,
      scope: row.scope,
      init: row.init_params,
      createdAt: row.created_at,
      lastUsedAt: row.last_used_at,
    };
  }

  async touch(sessionId: string): Promise<boolean> {
    const r = await this.pool.query(`UPDATE ${this.table} SET last_used_at = now() WHERE session_key = $1`, [
      sessionKey(sessionId),
    ]);
    return (r.rowCount ?? 0) > 0;
  }

  /**
   * `onlyIfIdle`: an instance ending a session for idleness ends its own copy; another instance may be
   * serving the same session meanwhile (its touches keep the row fresh), so the row goes only if idle here too.
   */
  async remove(sessionId: string, onlyIfIdle = false): Promise<void> {
    await this.pool.query(
      `DELETE FROM ${this.table} WHERE session_key = $1${
        onlyIfIdle ? " AND last_used_at < now() - make_interval(secs => $2)" : ""
      }`,
      onlyIfIdle ? [sessionKey(sessionId), this.options.idleMs / 1000] : [sessionKey(sessionId)],
    );
  }

  /** Deletes rows idle past the limit, unless another instance is doing it; returns how many it deleted. */
  async sweep(): Promise<number | undefined> {
    return await deleteAsOneInstance(
      this.pool,
      SWEEP_LOCK,
      `DELETE FROM ${this.table} WHERE last_used_at < now() - make_interval(secs => $1)`,
      [this.options.idleMs / 1000],
    );
  }

  start(): void {
    const every =
      this.options.sweepEveryMs ?? Math.max(1_000, Math.min(300_000, Math.floor(this.options.idleMs / 4)));
    this.timer = setInterval(
      () =>
        void this.sweep().catch((err: Error) =>
          this.options.warn?.(`could not delete idle MCP session rows: ${err.message}`),
        ),
      every,
    );
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.pool.end().catch(() => {});
  }
}

/** A store that exists once the database is ready (the router answers 503 until then, so none is asked sooner). */
export function storeOnceReady(get: () => SessionStoreLike | undefined): SessionStoreLike {
  const store = () => {
    const s = get();
    if (!s) throw new Error("the database is not ready yet");
    return s;
  };
  return {
    put: async (id, s) => await store().put(id, s),
    get: async (id) => await store().get(id),
    touch: async (id) => await store().touch(id),
    remove: async (id, onlyIfIdle) => await store().remove(id, onlyIfIdle),
  };
}
