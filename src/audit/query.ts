import { EXIT, UserError } from "../errors.js";
import { type AuditRecord, MAX_LIMIT } from "../runtime/audit-query.js";

export { type AuditFilters, type AuditRecord, MAX_LIMIT, queryAuditRows } from "../runtime/audit-query.js";

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
