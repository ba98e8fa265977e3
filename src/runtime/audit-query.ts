import type pg from "pg";
import { EXIT, UserError } from "../errors.js";

/**
 * Reading `<schema>.databricks_tool_calls` (docs/audit.md): newest first, narrowed by time, person, tool and
 * endpoint. Plain SQL with parameters: every filter is a value, never text spliced into the statement (the
 * schema name is checked as a PostgreSQL identifier where it is configured). Used by `audit --local` and by the
 * app's route for its managers (audit-route.ts).
 */
/** A row of databricks_tool_calls as PostgreSQL returns it (the table: audit-table.ts). */
export interface AuditDbRow {
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
}

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

export async function queryAuditRows(
  client: Pick<pg.Pool, "query"> | pg.Client,
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
  const r = await client.query<AuditDbRow>(
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
