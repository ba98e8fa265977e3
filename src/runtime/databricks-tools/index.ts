import type { ToolContexts } from "./contexts.js";
import { startToolsGateway, type ToolsGateway } from "./gateway.js";
import { type DatabricksToolsSettings, databricksToolsChildEnv } from "./settings.js";
import { type IssuedToken, type KeeperLog, WorkspaceTokenKeeper } from "./tokens.js";

export interface DatabricksTools {
  /** The backend's variables (the gateway secret among them: child-secrets.ts hands it over on the pipe). */
  childEnv: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Databricks' managed MCP servers behind MetaMCP (docs/databricks-tools.md), as the runtime runs them: the
 * app's workspace token kept fresh in the background, and the loopback gateway that attaches it. Off
 * (METAMCP_DATABRICKS_TOOLS=off): neither runs, and the backend's wrapper refuses workspace URLs itself.
 * Never fails the app's start: a token that cannot be had yet is the gateway's 503 with the reason.
 */
export async function startDatabricksTools(o: {
  settings: DatabricksToolsSettings;
  /** DATABRICKS_HOST, with scheme. */
  host: string;
  /** DATABRICKS_CLIENT_ID: the service principal's application id. */
  principalId: string;
  issueToken: () => Promise<IssuedToken>;
  log: KeeperLog;
  /** The router's per-request on-behalf-of tokens, for `#identity=user` servers. */
  contexts?: ToolContexts;
}): Promise<DatabricksTools> {
  if (!o.settings.enabled) {
    o.log.info(
      "Databricks tools off (METAMCP_DATABRICKS_TOOLS=off): servers on the workspace's /api/2.0/mcp/… are refused",
    );
    return { childEnv: databricksToolsChildEnv(o.settings, undefined), stop: async () => {} };
  }
  const keeper = new WorkspaceTokenKeeper(o.issueToken, o.log);
  keeper.start();
  const gateway: ToolsGateway = await startToolsGateway({
    workspaceOrigin: o.host,
    token: () => keeper.current(),
    principalId: o.principalId,
    log: o.log,
    appIdentity: o.settings.appIdentity !== "off",
    contexts: o.contexts,
  });
  o.log.info(
    `Databricks tools on: servers on ${new URL(o.host).host}/api/2.0/mcp/… run as the app's service principal ${o.principalId} (added or changed by ${o.settings.appIdentity === "everyone" ? "anyone" : o.settings.appIdentity === "off" ? "nobody" : "the app's managers"}, METAMCP_DATABRICKS_APP_IDENTITY=${o.settings.appIdentity}); those with #identity=user run as the person calling, on the token the Apps proxy forwards with each request (none forwarded: refused)`,
  );
  return {
    childEnv: databricksToolsChildEnv(o.settings, gateway),
    stop: async () => {
      keeper.stop();
      await gateway.close();
    },
  };
}
