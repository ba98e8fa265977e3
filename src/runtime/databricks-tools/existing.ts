import type pg from "pg";
import { type AppManagers, type StdioServerOwner, serversByOthers } from "../stdio-servers.js";

/**
 * Whether MetaMCP's server `url` is called as the app's service principal: on the workspace's origin and
 * not asking for the person's own token (`#identity=user`). The same rule as the backend's wrapper and
 * the create/update policy (overlay/…/databricks-tools.ts, patches/stdio-servers-module.ts).
 */
export function runsAsApp(url: string | null, workspaceOrigin: string): boolean {
  if (!url?.trim()) return false;
  try {
    const u = new URL(url.trim());
    return u.origin === workspaceOrigin && new URLSearchParams(u.hash.slice(1)).get("identity") !== "user";
  } catch {
    return false;
  }
}

/**
 * Workspace servers that run as the app and that no app manager made: made before this version (or before
 * METAMCP_DATABRICKS_APP_IDENTITY was narrowed), they now carry the service principal's grants. Said at
 * start, like STDIO servers by others, so a manager can review them.
 */
export async function appIdentityServersByOthers(
  client: pg.Client,
  schema: string,
  managers: AppManagers,
  host: string,
): Promise<StdioServerOwner[] | undefined> {
  const origin = new URL(host).origin;
  return await serversByOthers(client, schema, managers, {
    where: "s.url IS NOT NULL",
    keep: (url) => runsAsApp(url, origin),
  });
}

export function describeAppIdentityServerByOther(s: StdioServerOwner): string {
  return `Databricks workspace server "${s.name}" (owner: ${s.owner ?? "none, a public server"}) was not made by an app manager: it runs as the app's service principal, with its Unity Catalog grants; review it in MetaMCP`;
}
