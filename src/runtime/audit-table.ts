import type pg from "pg";
import { MIGRATION_LOCK } from "./database.js";

/**
 * `<schema>.databricks_tool_calls` (docs/audit.md). Ours, not upstream's: it stays out of drizzle's journal
 * (a migration of ours there would collide with upstream's next one), and is created at every start, after
 * upstream's migrations and under the same advisory lock, so instances starting together never race on it.
 * Each statement is idempotent; a later column is one more `ADD COLUMN IF NOT EXISTS` line here.
 */
export const AUDIT_TABLE = "databricks_tool_calls";

/** The columns an INSERT names, in order (audit-writer.ts). */
export const AUDIT_COLUMNS = [
  "called_at",
  "principal",
  "endpoint",
  "namespace",
  "server",
  "tool",
  "method",
  "duration_ms",
  "outcome",
  "error",
  "client",
  "session",
  "request_bytes",
  "response_bytes",
  "arguments",
] as const;

export function auditTableName(schema: string): string {
  return `"${schema}"."${AUDIT_TABLE}"`;
}

export async function ensureAuditTable(client: pg.Client, schema: string): Promise<{ created: boolean }> {
  const table = auditTableName(schema);
  await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK]);
  try {
    const before = await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [table]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${table} (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  called_at timestamp with time zone NOT NULL,
  principal text NOT NULL,
  endpoint text,
  namespace text,
  server text,
  tool text,
  method text NOT NULL,
  duration_ms double precision NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('ok', 'tool_error', 'protocol_error', 'refused', 'cut')),
  error text,
  client text,
  session text,
  request_bytes integer NOT NULL,
  response_bytes integer,
  arguments text
)`);
    await client.query(`CREATE INDEX IF NOT EXISTS "${AUDIT_TABLE}_called_at" ON ${table} (called_at)`);
    await client.query(
      `CREATE INDEX IF NOT EXISTS "${AUDIT_TABLE}_principal" ON ${table} (principal, called_at)`,
    );
    return { created: before.rows[0]?.t == null };
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK]).catch(() => {});
  }
}
