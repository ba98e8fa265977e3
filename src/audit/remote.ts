import type { Config } from "../config/load.js";
import { appPublicUrl } from "../databricks/apps.js";
import { connectWorkspace, oauthToken } from "../databricks/workspace.js";
import { DatabricksError } from "../errors.js";
import type { AuditFilters, AuditRecord } from "./query.js";

/** The route the app's router answers for its managers (src/runtime/audit-route.ts). */
const AUDIT_PATH = "/metamcp/_databricks/audit";

/**
 * A deployed app's audit: `GET <app url>/metamcp/_databricks/audit` through the Apps proxy with the caller's
 * own OAuth token. The app decides who may read it (its managers); we only say what its answer means.
 */
export async function readRemoteAudit(config: Config, filters: AuditFilters): Promise<AuditRecord[]> {
  const ws = await connectWorkspace(config);
  const appUrl = await appPublicUrl(ws, config.appName, config.target);
  const token = await oauthToken(ws);
  const q = new URLSearchParams({ limit: String(filters.limit) });
  if (filters.since) q.set("since", filters.since.toISOString());
  for (const k of ["user", "tool", "endpoint"] as const) if (filters[k]) q.set(k, filters[k]!);
  const url = `${appUrl.replace(/\/+$/, "")}${AUDIT_PATH}?${q}`;
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { authorization: `Bearer ${token}` },
      redirect: "manual",
      signal: AbortSignal.timeout(60_000),
    });
  } catch (err) {
    throw new DatabricksError(
      "app_unreachable",
      `the app did not answer at ${appUrl}: ${(err as Error).message}`,
    );
  }
  const text = await res.text();
  const said = (() => {
    try {
      return String((JSON.parse(text) as { error?: unknown }).error ?? "");
    } catch {
      return "";
    }
  })();
  if (res.status === 200) return (JSON.parse(text) as { rows: AuditRecord[] }).rows;
  if (res.status >= 300 && res.status < 400)
    throw new DatabricksError(
      "redirected_to_login",
      `the Apps proxy answered ${res.status}, a redirect to the login page: it did not accept the token`,
      "log in again (`databricks auth login --profile P`)",
    );
  if (res.status === 403)
    throw new DatabricksError(
      "audit_not_a_manager",
      `app ${config.appName} refused: ${said || "only its managers may read the audit"}`,
      "ask a manager of the app to add you to METAMCP_APP_MANAGERS, or query the table through Unity Catalog (docs/audit.md)",
    );
  throw new DatabricksError(
    "audit_unavailable",
    `app ${config.appName} answered ${res.status} for its audit${said ? `: ${said}` : ""}`,
    res.status === 404
      ? "is the audit on (METAMCP_AUDIT) and the app deployed with this version?"
      : undefined,
  );
}
