import type { IncomingMessage, ServerResponse } from "node:http";
import { isUserError } from "../errors.js";
import { maskSecrets } from "../log/secrets.js";
import { type AuditFilters, type AuditRecord, MAX_LIMIT } from "./audit-query.js";
import { isManagerIdentity, type Managers } from "./live-logs-guard.js";

/**
 * The audit on Databricks for the app's managers (docs/audit.md): `GET <app url>/metamcp/_databricks/audit`
 * through the Apps proxy with the caller's own OAuth token. The router answers it itself (never MetaMCP): only
 * an identity the proxy vouched for that is in METAMCP_APP_MANAGERS gets rows; everyone else 403, whatever
 * headers they send (identity headers from anyone but the proxy are gone before this runs).
 */
export const AUDIT_ROUTE = "/metamcp/_databricks/audit";

export function isAuditRoute(pathname: string): boolean {
  return pathname === AUDIT_ROUTE || pathname === `${AUDIT_ROUTE}/`;
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
};

/** The filters of the query string, or why they are not valid. */
export function auditFiltersOf(search: string): AuditFilters | string {
  const q = new URLSearchParams(search);
  const filters: AuditFilters = { limit: 100 };
  const since = q.get("since");
  if (since !== null) {
    const d = /^\d{4}-\d{2}-\d{2}/.test(since) ? new Date(since) : new Date(Number.NaN);
    if (Number.isNaN(d.getTime())) return "since must be an ISO date/time";
    filters.since = d;
  }
  const limit = q.get("limit");
  if (limit !== null) {
    const n = /^\d{1,6}$/.test(limit) ? Number(limit) : Number.NaN;
    if (!(n >= 1 && n <= MAX_LIMIT)) return `limit must be a number from 1 to ${MAX_LIMIT}`;
    filters.limit = n;
  }
  for (const k of ["user", "tool", "endpoint"] as const) {
    const v = q.get(k);
    if (v !== null && v !== "") filters[k] = v.slice(0, 320);
  }
  return filters;
}

/** Why the request gets no rows (status and message), or undefined when it does. */
function refusal(
  req: IncomingMessage,
  managers: Managers,
  auditOn: boolean,
  filters: AuditFilters | string,
): [number, string] | undefined {
  if (req.method !== "GET") return [405, "only GET"];
  if (!isManagerIdentity(req.headers, managers))
    return [
      403,
      "Only the app's managers (METAMCP_APP_MANAGERS) may read the tool-call audit: it holds everyone's calls.",
    ];
  if (!auditOn) return [404, "the tool-call audit is off (METAMCP_AUDIT=off)"];
  if (typeof filters === "string") return [400, filters];
  return undefined;
}

export function answerAuditRoute(
  req: IncomingMessage,
  res: ServerResponse,
  search: string,
  options: { managers: Managers; read?: (filters: AuditFilters) => Promise<AuditRecord[]> },
): void {
  const filters = auditFiltersOf(search);
  const refused = refusal(req, options.managers, options.read !== undefined, filters);
  if (refused || !options.read || typeof filters === "string") {
    json(res, refused?.[0] ?? 500, { error: refused?.[1] ?? "unreachable" });
    return;
  }
  options.read(filters).then(
    (rows) => json(res, 200, { rows }),
    (err) =>
      json(res, isUserError(err) ? 404 : 503, {
        error: maskSecrets(err instanceof Error ? err.message : String(err)),
      }),
  );
}
