/**
 * The Databricks tools settings (docs/databricks-tools.md) and what the backend gets of them. Names only:
 * env.ts reads and checks the values, like every other app setting.
 */

/** `on` (default): MetaMCP servers on the workspace's /api/2.0/mcp/… get the app's token through the gateway. */
export const DATABRICKS_TOOLS_ENV = "METAMCP_DATABRICKS_TOOLS";
/** Who may add or change a workspace server that runs as the app's service principal. */
export const APP_IDENTITY_ENV = "METAMCP_DATABRICKS_APP_IDENTITY";
export const APP_IDENTITY_POLICIES = ["managers", "everyone", "off"] as const;
export type AppIdentityPolicy = (typeof APP_IDENTITY_POLICIES)[number];

/** Where the backend's fetch wrapper finds the gateway (plain: a port is no secret). */
export const GATEWAY_PORT_ENV = "METAMCP_TOOLS_GATEWAY_PORT";
/** The gateway's per-start secret: handed to the backend on the fd-3 pipe (child-secrets.ts), never in env. */
export const GATEWAY_SECRET_ENV = "METAMCP_TOOLS_GATEWAY_SECRET";

export interface DatabricksToolsSettings {
  enabled: boolean;
  appIdentity: AppIdentityPolicy;
}

/**
 * What the backend needs: the policy always (its create/update check reads it even with tools off, so a
 * workspace server can't be added for later), the gateway only when one runs.
 */
export function databricksToolsChildEnv(
  settings: DatabricksToolsSettings,
  gateway: { port: number; secret: string } | undefined,
): Record<string, string> {
  return {
    [DATABRICKS_TOOLS_ENV]: settings.enabled && gateway ? "on" : "off",
    [APP_IDENTITY_ENV]: settings.appIdentity,
    ...(gateway ? { [GATEWAY_PORT_ENV]: String(gateway.port), [GATEWAY_SECRET_ENV]: gateway.secret } : {}),
  };
}
