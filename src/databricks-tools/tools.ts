import { type ConnectTarget, resolveAppUrl, tokenSourceFor } from "../connect/target.js";
import type { TokenSource } from "../connect/token-source.js";
import { getApp } from "../databricks/apps.js";
import { connectWorkspace } from "../databricks/workspace.js";
import { EXIT, UserError } from "../errors.js";
import { localPaths, readRunState } from "../local/state.js";
import { grantStatements } from "./grants.js";
import {
  checkServerName,
  classifyToolUrl,
  defaultServerName,
  identityOfUrl,
  parseToolServer,
  type ToolKind,
  type ToolServer,
  toolServerUrl,
} from "./kinds.js";
import { MetaMcpClient } from "./metamcp.js";

/** Where the tools live and who acts: the workspace host, the app, the person's tokens, the app's principal. */
export interface ToolsWorkspace {
  /** The workspace host the app calls managed servers on (its DATABRICKS_HOST). */
  host: string;
  appUrl: string;
  tokens: TokenSource;
  /** The app's service principal's application id (`service_principal_client_id` of the app). */
  servicePrincipal(): Promise<string>;
}

/**
 * A target's workspace: the profile's host and the Apps API for a Databricks target; the running stand-in for
 * `local` (its workspace is the app's DATABRICKS_HOST there, and its Apps API names the app's principal).
 */
export async function toolsWorkspace(t: ConnectTarget, appName: string): Promise<ToolsWorkspace> {
  const appUrl = await resolveAppUrl(t);
  const tokens = await tokenSourceFor(t);
  if (t.kind === "local") {
    const host = readRunState(localPaths(t.stateDir))!.workspaceUrl;
    return {
      host,
      appUrl,
      tokens,
      async servicePrincipal() {
        const res = await fetch(`${host}/api/2.0/apps/${encodeURIComponent(appName)}`, {
          headers: { authorization: `Bearer ${await tokens.token()}` },
          signal: AbortSignal.timeout(10_000),
        });
        const app = (await res.json().catch(() => ({}))) as { service_principal_client_id?: string };
        if (!res.ok || !app.service_principal_client_id)
          throw new UserError(
            "no_app_principal",
            `the local stand-in did not name app ${appName}'s service principal (HTTP ${res.status})`,
            EXIT.notRunning,
            "restart the local app (`local down`, then `local up`)",
          );
        return app.service_principal_client_id;
      },
    };
  }
  const ws = await connectWorkspace(t);
  return {
    host: ws.host,
    appUrl,
    tokens,
    async servicePrincipal() {
      const app = await getApp(ws, appName, t.target);
      if (!app.service_principal_client_id)
        throw new UserError(
          "no_app_principal",
          `app ${appName} has no service principal yet`,
          EXIT.databricks,
          `deploy it first (\`make bundle-deploy TARGET=${t.target}\`)`,
        );
      return app.service_principal_client_id;
    },
  };
}

export interface AddRequest {
  kind: string;
  ids?: string;
  name?: string;
  public?: boolean;
  /** Each person's own token calls it (`#identity=user`), not the app's service principal. */
  perPerson?: boolean;
}

export interface ToolServerEntry {
  uuid: string;
  name: string;
  kind: ToolKind;
  ids: string[];
  url: string;
  /** Every MetaMCP user sees it (no owner), else only its owner. */
  public: boolean;
  /** Who calls Databricks: the app's service principal, or each person (`#identity=user`). */
  identity: "app" | "user";
}

export interface AddResult extends ToolServerEntry {
  /** Who calls the server: the app's service principal's id, or `<each person>` for a per-person server. */
  principal: string;
  grants: string[];
}

function entryOf(
  row: { uuid: string; name: string; url: string | null; user_id: string | null },
  server: ToolServer,
) {
  return {
    uuid: row.uuid,
    name: row.name,
    kind: server.kind,
    ids: server.ids,
    url: row.url ?? "",
    public: row.user_id === null,
    identity: identityOfUrl(row.url ?? ""),
  };
}

/** The grantee in a per-person server's GRANT statements: each person (or a group of them) who will call it. */
export const PER_PERSON = "<each person's email, or a group>";

/** Adds a managed server to MetaMCP as the person, as an ordinary Streamable HTTP server on the workspace URL. */
export async function addToolServer(
  request: AddRequest,
  workspace: () => Promise<ToolsWorkspace>,
): Promise<AddResult> {
  // Bad input is said before anything is looked up.
  const server = parseToolServer(request.kind, request.ids);
  // Beside the app-identity server of the same kind and ids, so both can exist.
  const name = checkServerName(
    request.name ?? `${defaultServerName(server)}${request.perPerson ? "-per-person" : ""}`,
  );
  const ws = await workspace();
  // The fragment never reaches Databricks: the app's wrapper reads it to choose whose token calls (design §3).
  const url = `${toolServerUrl(ws.host, server)}${request.perPerson ? "#identity=user" : ""}`;
  const metamcp = new MetaMcpClient(ws.appUrl, ws.tokens);
  const row = await metamcp.createServer({
    name,
    description: `Databricks ${server.kind}${server.ids.length ? ` ${server.ids.join(".")}` : ""} (managed MCP server, called as ${request.perPerson ? "each person, with their own token" : "the app's service principal"})`,
    url,
    user_id: request.public ? null : undefined,
  });
  // Per person, Unity Catalog answers each caller by their own grants: the statements name who to grant.
  const principal = request.perPerson ? PER_PERSON : await ws.servicePrincipal();
  return { ...entryOf(row, server), principal, grants: grantStatements(server, principal) };
}

/** The managed servers on this workspace that MetaMCP shows the person (their own and the public ones). */
export async function listToolServers(ws: ToolsWorkspace): Promise<ToolServerEntry[]> {
  const rows = await new MetaMcpClient(ws.appUrl, ws.tokens).listServers();
  const entries: ToolServerEntry[] = [];
  for (const row of rows) {
    const server = classifyToolUrl(row.url, ws.host);
    if (server) entries.push(entryOf(row, server));
  }
  return entries;
}

export async function toolGrants(
  kind: string,
  ids: string | undefined,
  workspace: () => Promise<Pick<ToolsWorkspace, "servicePrincipal">>,
): Promise<{ kind: ToolKind; ids: string[]; principal: string; grants: string[] }> {
  const server = parseToolServer(kind, ids);
  const principal = await (await workspace()).servicePrincipal();
  return { kind: server.kind, ids: server.ids, principal, grants: grantStatements(server, principal) };
}
