import type pg from "pg";
import { EXIT, UserError } from "../errors.js";

/**
 * Reading `<schema>.databricks_tool_calls` (written by the runtime's audit, docs/audit.md): newest first,
 * narrowed by time, person, tool and endpoint. Plain SQL with parameters: every filter is a value, never text
 * spliced into the statement (the schema name is checked by the config as a PostgreSQL identifier).
 */
export interface AuditFilters {
  since?: Date;
  /** The principal (email or service principal id), case-insensitive. */
  user?: string;
  /** `tool` or `server__tool` as MetaMCP names it. */
  tool?: string;
  endpoint?: string;
  limit: number;
}

export interface AuditRecord {
  calledAt: string;
  principal: string;
  endpoint: string | null;
  namespace: string | null;
  server: string | null;
  tool: string | null;
  method: string;
  durationMs: number;
  outcome: string;
  error: string | null;
  client: string | null;
  session: string | null;
  requestBytes: number;
  responseBytes: number | null;
  arguments: string | null;
}

export const MAX_LIMIT = 10_000;

/** `--since`: `90s`, `15m`, `1h`, `7d`, or an ISO date/time. */
export function parseSince(value: string, now: Date = new Date()): Date {
  const m = /^(\d{1,6})([smhd])$/.exec(value.trim());
  if (m) {
    const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s" | "m" | "h" | "d"];
    return new Date(now.getTime() - Number(m[1]) * unit);
  }
  const d = /^\d{4}-\d{2}-\d{2}/.test(value) ? new Date(value) : new Date(Number.NaN);
  if (Number.isNaN(d.getTime()))
    throw new UserError(
      "bad_since",
      `--since ${JSON.stringify(value)} is not a duration or a date`,
      EXIT.input,
      "give a duration back from now (90s, 15m, 1h, 7d) or an ISO date such as 2026-12-07T09:00:00Z",
    );
  return d;
}

export function parseLimit(value: string | undefined): number {
  if (value === undefined) return 100;
  const n = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN;
  if (!(n >= 1 && n <= MAX_LIMIT))
    throw new UserError(
      "bad_limit",
      `--limit ${JSON.stringify(value)} is not a number from 1 to ${MAX_LIMIT}`,
    );
  return n;
}

export async function queryAuditRows(
  client: pg.Client,
  schema: string,
  filters: AuditFilters,
): Promise<AuditRecord[]> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [
    `"${schema}"."databricks_tool_calls"`,
  ]);
  if (exists.rows[0]?.t == null)
    throw new UserError(
      "audit_table_missing",
      `there is no ${schema}.databricks_tool_calls yet: the app has not started with the audit on`,
      EXIT.input,
      "start the app with METAMCP_AUDIT=on (the default) and make a tool call; docs/audit.md",
    );
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (sql: (n: string) => string, value: unknown) => {
    values.push(value);
    where.push(sql(`$${values.length}`));
  };
  if (filters.since) add((n) => `called_at >= ${n}`, filters.since);
  if (filters.user) add((n) => `lower(principal) = lower(${n})`, filters.user);
  if (filters.tool) add((n) => `(tool = ${n} OR server || '__' || tool = ${n})`, filters.tool);
  if (filters.endpoint) add((n) => `endpoint = ${n}`, filters.endpoint);
  values.push(filters.limit);
  const r = await client.query<{
    called_at: Date;
    principal: string;
    endpoint: string | null;
    namespace: string | null;
    server: string | null;
    tool: string | null;
    method: string;
    duration_ms: number;
    outcome: string;
    error: string | null;
    client: string | null;
    session: string | null;
    request_bytes: number;
    response_bytes: number | null;
    arguments: string | null;
  }>(
    `SELECT called_at, principal, endpoint, namespace, server, tool, method, duration_ms, outcome, error, client,
            session, request_bytes, response_bytes, arguments
       FROM "${schema}"."databricks_tool_calls"
      ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY called_at DESC, id DESC
      LIMIT $${values.length}`,
    values,
  );
  return r.rows.map((row) => ({
    calledAt: row.called_at.toISOString(),
    principal: row.principal,
    endpoint: row.endpoint,
    namespace: row.namespace,
    server: row.server,
    tool: row.tool,
    method: row.method,
    durationMs: row.duration_ms,
    outcome: row.outcome,
    error: row.error,
    client: row.client,
    session: row.session,
    requestBytes: row.request_bytes,
    responseBytes: row.response_bytes,
    arguments: row.arguments,
  }));
}

/** The human table: one line per call, newest first. */
export function formatAuditRows(rows: readonly AuditRecord[]): string {
  if (rows.length === 0) return "no calls recorded for these filters";
  const what = (r: AuditRecord) =>
    r.tool ? `${r.server ? `${r.server}__` : ""}${r.tool}` : r.method === "tools/call" ? "?" : r.method;
  const lines = rows.map((r) =>
    [
      r.calledAt.replace("T", " ").replace(/\.\d+Z$/, "Z"),
      r.principal.padEnd(24),
      (r.endpoint ?? r.namespace ?? "-").padEnd(14),
      what(r).padEnd(28),
      r.outcome.padEnd(14),
      `${Math.round(r.durationMs)} ms`.padStart(8),
      r.error ? ` ${r.error}` : "",
    ].join(" "),
  );
  return lines.join("\n");
}
