import sdk, { ApiError } from "@databricks/sdk-experimental";
import type * as apps from "@databricks/sdk-experimental/dist/apis/apps/index.js";
import { DatabricksError, UserError } from "../errors.js";
import { waitFor } from "../retry.js";
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
  /**
   * Between polls where we wait on something we did not start (a deployment `bundle deploy` made, a compute
   * someone else is starting). The SDK's waiters (what we start ourselves) pace themselves: 1 s growing to 10 s.
   */
  pollMs?: number;
  /** Called with each new state (for progress lines). */
  onState?: (state: string, message: string | undefined) => void;
}

const sdkTimeout = (ms: number) => new sdk.Time(Math.max(1, Math.round(ms)), sdk.TimeUnits.milliseconds);

/** Calls `onState` only when the state changes. */
function stateReporter(onState: WaitOptions["onState"]) {
  let last = "";
  return (state: string, message: string | undefined) => {
    if (state !== last) onState?.(state, message);
    last = state;
    return state;
  };
}

/** Polls `check` until it gives a value, at most until `deadline` (then `onTimeout`'s error). */
async function pollUntil<T>(
  check: () => Promise<T | undefined>,
  intervalMs: number,
  deadline: number,
  onTimeout: () => Error,
): Promise<T> {
  return await waitFor(check, {
    intervalMs,
    timeoutMs: Math.max(0, deadline - Date.now()),
    what: "the app",
    onTimeout,
  });
}

function computeFailed(name: string, app: apps.App): DatabricksError {
  const state = app.compute_status?.state ?? "UNKNOWN";
  return new DatabricksError(
    "compute_failed",
    `app ${name}: compute is ${state}${app.compute_status?.message ? `: ${app.compute_status.message}` : ""}`,
    "see `make app-status` and the app's page in the workspace",
  );
}

/**
 * Starts the app's compute when it is stopped (a deployment needs running compute) and waits until it is
 * ACTIVE: the SDK's `apps.start` waiter when we start it; a poll when someone else already is.
 */
export async function ensureComputeActive(
  ws: Workspace,
  name: string,
  options: WaitOptions,
): Promise<{ started: boolean; state: string }> {
  const deadline = Date.now() + options.timeoutMs;
  const report = stateReporter(options.onState);
  let last = "UNKNOWN";
  const seen = (app: apps.App): string => {
    last = report(app.compute_status?.state ?? "UNKNOWN", app.compute_status?.message);
    if (last === "ERROR" || last === "DELETING") throw computeFailed(name, app);
    return last;
  };
  const timedOut = () =>
    new DatabricksError(
      "compute_timeout",
      `app ${name}: compute still ${last} after ${Math.round(options.timeoutMs / 1000)} s`,
      "try again later, or look at `make app-status`",
    );
  let state = seen(await getApp(ws, name, ""));
  if (state !== "ACTIVE" && state !== "STOPPED") {
    // Starting (or stopping) already, not by us: no SDK waiter follows that.
    state = await pollUntil(
      async () => {
        const s = seen(await getApp(ws, name, ""));
        return s === "ACTIVE" || s === "STOPPED" ? s : undefined;
      },
      options.pollMs ?? 3000,
      deadline,
      timedOut,
    );
  }
  if (state === "ACTIVE") return { started: false, state };
  let waiter: Awaited<ReturnType<Workspace["client"]["apps"]["start"]>>;
  try {
    waiter = await ws.client.apps.start({ name });
  } catch (err) {
    throw apiFailure(`starting app ${name}`, err);
  }
  try {
    await waiter.wait({
      timeout: sdkTimeout(deadline - Date.now()),
      // Before the waiter judges the state: a compute that stops again or fails is our error at once.
      onProgress: async (app) => {
        if (seen(app) === "STOPPED") throw computeFailed(name, app);
      },
    });
  } catch (err) {
    if (err instanceof UserError) throw err;
    if (err instanceof sdk.retries.TimeoutError) throw timedOut();
    throw apiFailure(`starting app ${name}`, err);
  }
  return { started: true, state: "ACTIVE" };
}

const IN_PROGRESS = /in progress|already.*deploy|active deployment|pending deployment/i;

/** A SNAPSHOT deployment we started: its first state, and the SDK's waiter for its outcome. */
export interface StartedDeployment extends DeploymentInfo {
  /** Waits until SUCCEEDED, FAILED or CANCELLED (the SDK's `apps.deploy` waiter), reporting each new state. */
  wait(options: WaitOptions): Promise<DeploymentInfo>;
}

/** `POST /api/2.0/apps/{name}/deployments` with `mode: SNAPSHOT`; tells "already in progress" apart. */
export async function startSnapshotDeployment(
  ws: Workspace,
  name: string,
  sourceCodePath: string,
): Promise<StartedDeployment> {
  let waiter: Awaited<ReturnType<Workspace["client"]["apps"]["deploy"]>>;
  try {
    waiter = await ws.client.apps.deploy({
      app_name: name,
      app_deployment: { source_code_path: sourceCodePath, mode: "SNAPSHOT" },
    });
  } catch (err) {
    if (err instanceof ApiError && IN_PROGRESS.test(err.message)) {
      throw await inProgressError(ws, name, err.message);
    }
    throw apiFailure(`deploying app ${name}`, err);
  }
  const info = deploymentInfo(waiter);
  if (!info) throw new DatabricksError("bad_response", "the deployment request returned no deployment_id");
  return {
    ...info,
    wait: async (options) => {
      const report = stateReporter(options.onState);
      let outcome: DeploymentInfo | undefined;
      let last = info.state ?? "UNKNOWN";
      try {
        const done = await waiter.wait({
          timeout: sdkTimeout(options.timeoutMs),
          // The waiter retries CANCELLED until its timeout and throws on FAILED without the deployment:
          // both end here, with the deployment, before it judges.
          onProgress: async (d) => {
            const now = deploymentInfo(d) ?? { id: info.id };
            last = report(now.state ?? "UNKNOWN", now.message);
            if (now.state === "FAILED" || now.state === "CANCELLED") {
              outcome = now;
              throw new DeploymentEnded();
            }
          },
        });
        return deploymentInfo(done) ?? { id: info.id, state: "SUCCEEDED" };
      } catch (err) {
        if (err instanceof DeploymentEnded && outcome) return outcome;
        if (err instanceof sdk.retries.TimeoutError) throw deploymentTimeout(name, info.id, last, options);
        throw apiFailure(`reading deployment ${info.id} of app ${name}`, err);
      }
    },
  };
}

/** Ends the SDK's deployment waiter at a final state it would not end on itself. */
class DeploymentEnded extends Error {}

function deploymentTimeout(name: string, id: string, state: string, options: WaitOptions): DatabricksError {
  return new DatabricksError(
    "deployment_timeout",
    `deployment ${id} of app ${name} is still ${state} after ${Math.round(options.timeoutMs / 1000)} s`,
    "it may still finish: `make app-status` shows it",
  );
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

/**
 * Waits for a deployment we did not start (one `bundle deploy` made, or one already in progress) until
 * SUCCEEDED, FAILED or CANCELLED, reporting each new state. The SDK has a waiter only for the deployments its
 * own `deploy` call starts, so this polls `getDeployment` (`waitFor`).
 */
export async function waitForDeployment(
  ws: Workspace,
  name: string,
  deploymentId: string,
  options: WaitOptions,
): Promise<DeploymentInfo> {
  const report = stateReporter(options.onState);
  let last = "UNKNOWN";
  return await pollUntil(
    async () => {
      let d: apps.AppDeployment;
      try {
        d = await ws.client.apps.getDeployment({ app_name: name, deployment_id: deploymentId });
      } catch (err) {
        throw apiFailure(`reading deployment ${deploymentId} of app ${name}`, err);
      }
      const info = deploymentInfo(d) ?? { id: deploymentId };
      last = report(info.state ?? "UNKNOWN", info.message);
      return TERMINAL_DEPLOYMENT_STATES.has(last) ? info : undefined;
    },
    options.pollMs ?? 3000,
    Date.now() + options.timeoutMs,
    () => deploymentTimeout(name, deploymentId, last, options),
  );
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
