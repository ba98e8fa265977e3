import type * as apps from "@databricks/sdk-experimental/dist/apis/apps/index.js";
import { DatabricksError, UserError } from "../errors.js";
import type { DatabricksCli } from "./cli.js";
import { apiFailure, isNotFound, normalizeAppUrl, oauthToken, type Workspace } from "./workspace.js";

/** The app, its compute and its deployments, as `app-status` shows them. */
export interface AppStatus {
  name: string;
  url?: string;
  appState?: string;
  appMessage?: string;
  computeState?: string;
  computeMessage?: string;
  activeDeployment?: DeploymentInfo;
  pendingDeployment?: DeploymentInfo;
}

export interface DeploymentInfo {
  id: string;
  state?: string;
  message?: string;
  sourceCodePath?: string;
  createTime?: string;
}

/** The Apps API's app, as `databricks apps get -o json` prints it. */
export type AppRecord = apps.App;

export const TERMINAL_DEPLOYMENT_STATES = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

export function deploymentInfo(d: apps.AppDeployment | undefined): DeploymentInfo | undefined {
  if (!d?.deployment_id) return undefined;
  return {
    id: d.deployment_id,
    state: d.status?.state,
    message: d.status?.message,
    sourceCodePath: d.source_code_path,
    createTime: d.create_time,
  };
}

export function appStatusOf(app: apps.App): AppStatus {
  return {
    name: app.name,
    url: app.url ? normalizeAppUrl(app.url) : undefined,
    appState: app.app_status?.state,
    appMessage: app.app_status?.message,
    computeState: app.compute_status?.state,
    computeMessage: app.compute_status?.message,
    activeDeployment: deploymentInfo(app.active_deployment),
    pendingDeployment: deploymentInfo(app.pending_deployment),
  };
}

function appNotFound(name: string, where: string, target: string): DatabricksError {
  return new DatabricksError(
    "app_not_found",
    `app ${name} does not exist in ${where}`,
    `run \`make bundle-deploy TARGET=${target}\` first`,
  );
}

/** The Apps API's refusal of an unknown app ("App with name X does not exist or is deleted."). */
export const APP_MISSING = /does not exist or is deleted/i;

/** `databricks apps get <name> -o json`; an app that does not exist says which command makes it. */
export async function readApp(cli: DatabricksCli, name: string, target: string): Promise<apps.App> {
  try {
    return await cli.json<apps.App>(["apps", "get", name]);
  } catch (err) {
    if (err instanceof UserError && err.code === "cli_failed" && APP_MISSING.test(err.message))
      throw appNotFound(name, `the workspace of profile ${cli.profile}`, target);
    throw err;
  }
}

/** `databricks apps get-deployment <app> <id> -o json`. */
export async function readDeployment(
  cli: DatabricksCli,
  name: string,
  deploymentId: string,
): Promise<DeploymentInfo> {
  const d = await cli.json<apps.AppDeployment>(["apps", "get-deployment", name, deploymentId]);
  return deploymentInfo(d) ?? { id: deploymentId };
}

export async function getApp(ws: Workspace, name: string, target: string): Promise<apps.App> {
  try {
    return await ws.client.apps.get({ name });
  } catch (err) {
    if (isNotFound(err)) throw appNotFound(name, ws.host, target);
    throw apiFailure(`reading app ${name}`, err);
  }
}

/**
 * The app's public URL, for a user's request through the Apps proxy: an OAuth token first (the proxy
 * refuses personal access tokens, so that is said before anything else), then the app's record.
 */
export async function appPublicUrl(ws: Workspace, name: string, target: string): Promise<string> {
  await oauthToken(ws);
  const app = await getApp(ws, name, target);
  if (!app.url) {
    throw new DatabricksError(
      "no_app_url",
      `app ${name} has no URL yet (compute ${app.compute_status?.state ?? "?"})`,
      `run \`make app-deploy TARGET=${target}\``,
    );
  }
  return normalizeAppUrl(app.url);
}
