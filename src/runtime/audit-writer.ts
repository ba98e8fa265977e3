import pg from "pg";
import type { AuditSink } from "./audit-observer.js";
import { type AuditFilters, type AuditRecord, queryAuditRows } from "./audit-query.js";
import type { AuditRow } from "./audit-rows.js";
import { AUDIT_COLUMNS, auditTableName } from "./audit-table.js";
import { deleteAsOneInstance, describePgError } from "./database.js";

/**
 * Rows to Lakebase without ever being in a call's way: `record` only pushes onto a bounded queue; a timer
 * writes the queue in batches (one multi-row INSERT each) on a small pool of its own, whose connections ask
 * the credential keeper for the password at every login (the Lakebase credential rotates hourly). A full queue
 * or a failing database drops rows: counted, and said in a warning at most every `warnEveryMs`.
 */
export interface AuditWriterOptions {
  /** The runtime's connection settings (database.ts clientConfig: password read at each login). */
  connection: pg.ClientConfig;
  schema: string;
  warn: (message: string) => void;
  /** METAMCP_AUDIT_DAYS: rows older than this are deleted (by one instance at a time), hourly. */
  retentionDays: number;
  maxQueue?: number;
  batchSize?: number;
  flushEveryMs?: number;
  retentionEveryMs?: number;
  warnEveryMs?: number;
}

export interface AuditStats {
  written: number;
  dropped: number;
  queued: number;
}

/** Its own advisory lock: one instance's DELETE at a time, the others skip that round. */
const RETENTION_LOCK = 0x6d6d6172; // "mmar"
const NAMESPACES_FRESH_MS = 60_000;

export class AuditWriter implements AuditSink {
  private queue: AuditRow[] = [];
  private readonly pool: pg.Pool;
  private readonly maxQueue: number;
  private readonly batchSize: number;
  private timer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private written = 0;
  private dropped = 0;
  private droppedUnwarned = 0;
  private lastWarnAt = Number.NEGATIVE_INFINITY;
  private lastReason = "";
  private namespaces:
    | { at: number; byEndpoint: Map<string, string>; byUuid: Map<string, string> }
    | undefined;
  private closed = false;

  constructor(private readonly options: AuditWriterOptions) {
    this.maxQueue = options.maxQueue ?? 10_000;
    this.batchSize = options.batchSize ?? 500;
    this.pool = new pg.Pool({
      ...options.connection,
      max: 2,
      idleTimeoutMillis: 30_000,
      connectionTimeoutMillis: 5_000,
    });
    // A connection lost while idle (a restart, a failover): the next batch opens a new one.
    this.pool.on("error", () => {});
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.options.flushEveryMs ?? 1000);
    this.timer.unref();
    const every = this.options.retentionEveryMs ?? 3_600_000;
    this.retentionTimer = setInterval(() => void this.enforceRetention().catch(() => {}), every);
    this.retentionTimer.unref();
    // Once soon after start too: an app restarted more often than hourly still trims.
    setTimeout(() => void this.enforceRetention().catch(() => {}), Math.min(every, 60_000)).unref();
  }

  record(row: AuditRow): void {
    if (this.closed || this.queue.length >= this.maxQueue) {
      this.drop(1, this.closed ? "the app is stopping" : `the audit queue is full (${this.maxQueue} rows)`);
      return;
    }
    this.queue.push(row);
    if (this.queue.length >= this.batchSize) void this.flush();
  }

  stats(): AuditStats {
    return { written: this.written, dropped: this.dropped, queued: this.queue.length };
  }

  /** Writes what is queued now (one flush at a time; a second caller waits for the running one, then runs). */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.queue.length === 0) return;
    this.flushing = this.writeQueued().finally(() => {
      this.flushing = undefined;
    });
    await this.flushing;
  }

  /** Rows for the managers' route (audit-route.ts), on the writer's own pool. */
  async read(filters: AuditFilters): Promise<AuditRecord[]> {
    return await queryAuditRows(this.pool, this.options.schema, filters);
  }

  /** Deletes rows past METAMCP_AUDIT_DAYS, unless another instance is doing it; returns how many it deleted. */
  async enforceRetention(): Promise<number | undefined> {
    return await deleteAsOneInstance(
      this.pool,
      RETENTION_LOCK,
      `DELETE FROM ${auditTableName(this.options.schema)} WHERE called_at < now() - make_interval(days => $1)`,
      [this.options.retentionDays],
    );
  }

  /** Stops taking rows, writes what is queued within `timeoutMs`, closes the pool. */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.flush().catch(() => {}),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (this.queue.length > 0)
      this.drop(this.queue.splice(0).length, "the app stopped before they were written");
    this.warnDropped(true);
    await this.pool.end().catch(() => {});
  }

  private async writeQueued(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.batchSize);
      try {
        await this.resolveNamespaces(batch);
        await this.insert(batch);
        this.written += batch.length;
      } catch (err) {
        this.drop(batch.length, `the database refused them: ${describePgError(err)}`);
      }
    }
    this.warnDropped(false);
  }

  /**
   * One JSON parameter for the whole batch: the driver serializes one string instead of 15 values a row, which
   * took most of the audit's CPU in the router's process (bench mcp-proxy).
   */
  private async insert(batch: AuditRow[]): Promise<void> {
    const rows = batch.map((r) => ({
      called_at: r.calledAt,
      principal: pgText(r.principal),
      endpoint: pgText(r.endpoint),
      namespace: pgText(r.namespace),
      server: pgText(r.server),
      tool: pgText(r.tool),
      method: pgText(r.method),
      duration_ms: r.durationMs,
      outcome: r.outcome,
      error: pgText(r.error),
      client: pgText(r.client),
      session: r.session,
      request_bytes: r.requestBytes,
      response_bytes: r.responseBytes,
      arguments: pgText(r.arguments),
    }));
    const table = auditTableName(this.options.schema);
    const columns = AUDIT_COLUMNS.join(",");
    await this.pool.query(
      `INSERT INTO ${table} (${columns}) SELECT ${columns} FROM json_populate_recordset(NULL::${table}, $1::json)`,
      [JSON.stringify(rows)],
    );
  }

  /**
   * The router knows an endpoint's name, not its namespace: MetaMCP's own tables do (endpoints.namespace_uuid).
   * Read once a minute; a release without those tables (or any failure) leaves namespace empty.
   */
  private async resolveNamespaces(batch: AuditRow[]): Promise<void> {
    if (!batch.some((r) => r.endpoint !== null || r.namespace !== null)) return;
    if (!this.namespaces || Date.now() - this.namespaces.at > NAMESPACES_FRESH_MS) {
      const byEndpoint = new Map<string, string>();
      const byUuid = new Map<string, string>();
      try {
        const s = `"${this.options.schema}"`;
        const r = await this.pool.query<{ endpoint: string | null; uuid: string; namespace: string }>(
          `SELECT e.name AS endpoint, n.uuid::text AS uuid, n.name AS namespace
             FROM ${s}."namespaces" n LEFT JOIN ${s}."endpoints" e ON e.namespace_uuid = n.uuid`,
        );
        for (const row of r.rows) {
          if (row.endpoint) byEndpoint.set(row.endpoint, row.namespace);
          byUuid.set(row.uuid, row.namespace);
        }
      } catch {
        // no MetaMCP tables (or none readable): rows keep what the router knew
      }
      this.namespaces = { at: Date.now(), byEndpoint, byUuid };
    }
    for (const r of batch) {
      if (r.endpoint !== null && r.namespace === null)
        r.namespace = this.namespaces.byEndpoint.get(r.endpoint) ?? null;
      else if (r.namespace !== null) r.namespace = this.namespaces.byUuid.get(r.namespace) ?? r.namespace;
    }
  }

  private drop(count: number, reason: string): void {
    this.dropped += count;
    this.droppedUnwarned += count;
    this.lastReason = reason;
    this.warnDropped(false);
  }

  private warnDropped(force: boolean): void {
    if (this.droppedUnwarned === 0) return;
    const now = Date.now();
    if (!force && now - this.lastWarnAt < (this.options.warnEveryMs ?? 30_000)) return;
    this.lastWarnAt = now;
    this.options.warn(
      `audit: dropped ${this.droppedUnwarned} row(s) (${this.lastReason}); ${this.dropped} dropped since start, ${this.written} written. Tool calls are not affected (docs/audit.md)`,
    );
    this.droppedUnwarned = 0;
  }
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * What a client names (a tool, its own name) reaches a text column as PostgreSQL takes it: it refuses a NUL
 * and a lone surrogate, and one refused value would fail the whole batch, everyone's rows in it.
 */
function pgText<T extends string | null>(value: T): T {
  if (value === null) return value;
  return value.replaceAll("\u0000", "\ufffd").replace(LONE_SURROGATE, "\ufffd") as T;
}
