import { ApiError } from "@databricks/sdk-experimental";
import type * as apps from "@databricks/sdk-experimental/dist/apis/apps/index.js";
import { DatabricksError, UserError } from "../errors.js";
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

export const TERMINAL_DEPLOYMENT_STATES = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

function deploymentInfo(d: apps.AppDeployment | undefined): DeploymentInfo | undefined {
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

export async function getApp(ws: Workspace, name: string, target: string): Promise<apps.App> {
  try {
    return await ws.client.apps.get({ name });
  } catch (err) {
    if (isNotFound(err)) {
      throw new DatabricksError(
        "app_not_found",
        `app ${name} does not exist in ${ws.host}`,
        `run \`make bundle-deploy TARGET=${target}\` first`,
      );
    }
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

export interface WaitOptions {
  timeoutMs: number;
  pollMs?: number;
  /** Called with each new state (for progress lines). */
  onState?: (state: string, message: string | undefined) => void;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Starts the app's compute when it is stopped (the bundle does not redeploy code, and a deployment
 * needs running compute), and waits until it is ACTIVE.
 */
export async function ensureComputeActive(
  ws: Workspace,
  name: string,
  options: WaitOptions,
): Promise<{ started: boolean; state: string }> {
  const sleep = options.sleep ?? defaultSleep;
  const deadline = Date.now() + options.timeoutMs;
  let app = await getApp(ws, name, "");
  let started = false;
  let last = "";
  for (;;) {
    const state = app.compute_status?.state ?? "UNKNOWN";
    if (state !== last) {
      options.onState?.(state, app.compute_status?.message);
      last = state;
    }
    if (state === "ACTIVE") return { started, state };
    if (state === "ERROR" || state === "DELETING") {
      throw new DatabricksError(
        "compute_failed",
        `app ${name}: compute is ${state}${app.compute_status?.message ? `: ${app.compute_status.message}` : ""}`,
        "see `make app-status` and the app's page in the workspace",
      );
    }
    if (state === "STOPPED" && !started) {
      try {
        await ws.client.apps.start({ name });
      } catch (err) {
        throw apiFailure(`starting app ${name}`, err);
      }
      started = true;
    }
    if (Date.now() >= deadline) {
      throw new DatabricksError(
        "compute_timeout",
        `app ${name}: compute still ${state} after ${Math.round(options.timeoutMs / 1000)} s`,
        "try again later, or look at `make app-status`",
      );
    }
    await sleep(options.pollMs ?? 3000);
    try {
      app = await ws.client.apps.get({ name });
    } catch (err) {
      throw apiFailure(`reading app ${name}`, err);
    }
  }
}

const IN_PROGRESS = /in progress|already.*deploy|active deployment|pending deployment/i;

/** `POST /api/2.0/apps/{name}/deployments` with `mode: SNAPSHOT`; tells "already in progress" apart. */
export async function startSnapshotDeployment(
  ws: Workspace,
  name: string,
  sourceCodePath: string,
): Promise<DeploymentInfo> {
  try {
    const waiter = await ws.client.apps.deploy({
      app_name: name,
      app_deployment: { source_code_path: sourceCodePath, mode: "SNAPSHOT" },
    });
    const info = deploymentInfo(waiter);
    if (!info) throw new DatabricksError("bad_response", "the deployment request returned no deployment_id");
    return info;
  } catch (err) {
    if (err instanceof ApiError && IN_PROGRESS.test(err.message)) {
      throw await inProgressError(ws, name, err.message);
    }
    if (err instanceof UserError) throw err;
    throw apiFailure(`deploying app ${name}`, err);
  }
}

/**
 * Names the deployment that blocks ours. The platform also refuses deploys for a few minutes after a
 * failed one while nothing shows as pending: that case gets its own advice instead of "wait for it".
 */
async function inProgressError(
  ws: Workspace,
  name: string,
  platformMessage: string,
): Promise<DatabricksError> {
  let pending: DeploymentInfo | undefined;
  let active: DeploymentInfo | undefined;
  try {
    const status = appStatusOf(await ws.client.apps.get({ name }));
    pending = status.pendingDeployment;
    active = status.activeDeployment;
  } catch {
    // The refusal itself is the news; a failed lookup only costs the detail.
  }
  if (pending && !TERMINAL_DEPLOYMENT_STATES.has(pending.state ?? "")) {
    return new DatabricksError(
      "deployment_in_progress",
      `a deployment of app ${name} is already in progress: ${pending.id} is ${pending.state ?? "PENDING"}${
        pending.createTime ? ` (since ${pending.createTime})` : ""
      } (${platformMessage})`,
      "wait for it (`make app-status` shows it), then run app-deploy again",
    );
  }
  const last = active?.state ? ` (the active deployment, ${active.id}, is ${active.state})` : "";
  return new DatabricksError(
    "deployment_in_progress",
    `a deployment of app ${name} is already in progress, though none shows as pending${last} (${platformMessage})`,
    "after a failed deployment the platform can take 2-5 minutes to settle: wait until `make app-status` shows compute ACTIVE and no pending deployment, then run app-deploy again",
  );
}

/** Polls the deployment until SUCCEEDED, FAILED or CANCELLED, reporting each state change. */
export async function waitForDeployment(
  ws: Workspace,
  name: string,
  deploymentId: string,
  options: WaitOptions,
): Promise<DeploymentInfo> {
  const sleep = options.sleep ?? defaultSleep;
  const deadline = Date.now() + options.timeoutMs;
  let last = "";
  for (;;) {
    let d: apps.AppDeployment;
    try {
      d = await ws.client.apps.getDeployment({ app_name: name, deployment_id: deploymentId });
    } catch (err) {
      throw apiFailure(`reading deployment ${deploymentId} of app ${name}`, err);
    }
    const info = deploymentInfo(d) ?? { id: deploymentId };
    const state = info.state ?? "UNKNOWN";
    if (state !== last) {
      options.onState?.(state, info.message);
      last = state;
    }
    if (TERMINAL_DEPLOYMENT_STATES.has(state)) return info;
    if (Date.now() >= deadline) {
      throw new DatabricksError(
        "deployment_timeout",
        `deployment ${deploymentId} of app ${name} is still ${state} after ${Math.round(options.timeoutMs / 1000)} s`,
        "it may still finish: `make app-status` shows it",
      );
    }
    await sleep(options.pollMs ?? 3000);
  }
}

export async function deleteApp(ws: Workspace, name: string): Promise<boolean> {
  try {
    await ws.client.apps.delete({ name });
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw apiFailure(`deleting app ${name}`, err);
  }
}
