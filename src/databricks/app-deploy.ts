import type { Config } from "../config/load.js";
import { DatabricksError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import {
  appStatusOf,
  type DeploymentInfo,
  ensureComputeActive,
  getApp,
  type StartedDeployment,
  startSnapshotDeployment,
  TERMINAL_DEPLOYMENT_STATES,
  waitForDeployment,
} from "./apps.js";
import { readBundleSummary, varArgs } from "./bundle.js";
import { readDeployRecord, treeFingerprint, writeDeployRecord } from "./deploy-record.js";
import { type ConfigFor, cliFor, deploymentIds, newDeployment, relay } from "./deployments.js";
import { type AppLogEntry, streamLogs } from "./logs.js";
import { renderBundle, writeBundle } from "./render.js";
import { authSecretExists, secretMissing } from "./secrets.js";
import { connectWorkspace, normalizeAppUrl, oauthToken, type Workspace } from "./workspace.js";

export interface AppDeployOptions {
  wait: boolean;
  timeoutMs: number;
  pollMs?: number;
  /** How many log lines to show when a deployment fails. */
  logLines?: number;
  /** Deploy even when the active deployment already shipped this tree. */
  force?: boolean;
}

/**
 * The last lines of the app's log stream. Best effort: a failed deployment is reported either way, with
 * the reason the lines are missing when they are.
 */
export async function lastLogLines(
  ws: Workspace,
  appUrl: string,
  count: number,
): Promise<{ lines: string[]; error?: string }> {
  const lines: AppLogEntry[] = [];
  try {
    await streamLogs({
      appUrl,
      token: () => oauthToken(ws),
      follow: false,
      idleMs: 1500,
      signal: AbortSignal.timeout(15_000),
      onEntry: (e) => {
        lines.push(e);
        if (lines.length > count) lines.shift();
      },
    });
  } catch (err) {
    return { lines: [], error: err instanceof Error ? err.message : String(err) };
  }
  return { lines: lines.map((e) => `[${e.source}] ${e.message.trimEnd()}`) };
}

export interface AppDeployResult {
  target: string;
  appName: string;
  deploymentId: string;
  state: string;
  message?: string;
  sourceCodePath: string;
  url?: string;
  computeStarted: boolean;
  /** Who made the deployment: us (SNAPSHOT), `bundle deploy` itself, or nobody (the tree already runs). */
  by: "app-deploy" | "bundle-deploy" | "unchanged";
  durationMs: number;
}

/**
 * app-deploy ships the current app tree and reports the outcome. It agrees with what `bundle deploy`
 * does itself with `lifecycle.started: true`:
 * - a deployment already in progress is waited for (as the CLI does), never answered "in progress";
 * - a tree that already runs (the deployment that shipped it is the active one) is not deployed again
 *   (`--force` does);
 * - otherwise the tree is synced with `bundle deploy`; when that deploys the code itself (it does when it
 *   starts or changes the app) its deployment is the outcome, else a SNAPSHOT deployment of the synced
 *   tree is made and followed to its end.
 */
export async function appDeploy(
  config: Config,
  configFor: ConfigFor,
  log: Logger,
  options: AppDeployOptions,
): Promise<AppDeployResult> {
  const started = Date.now();
  const cli = cliFor(config, log);
  await cli.requireVersion();
  const probe = renderBundle(config, configFor);
  const summary = await readBundleSummary(cli, probe.bundleDir, config.target, probe.variables);
  log.info(`bundle: app ${summary.appName}, source ${summary.sourceCodePath}`);
  const ws = await connectWorkspace(config);
  if (!(await authSecretExists(ws, config.secret.scope, config.secret.key)))
    throw secretMissing(config.secret.scope, config.secret.key, config.target);
  let app = await getApp(ws, summary.appName, config.target);
  const url = app.url ? normalizeAppUrl(app.url) : undefined;
  const rendered = renderBundle(config, configFor, { appUrl: url });
  writeBundle(rendered);
  const waitOpts = (label: string) => ({
    timeoutMs: options.timeoutMs,
    pollMs: options.pollMs,
    onState: (s: string, m: string | undefined) => log.info(`deployment ${label}: ${s}${m ? ` (${m})` : ""}`),
  });
  const pending = appStatusOf(app).pendingDeployment;
  if (pending && !TERMINAL_DEPLOYMENT_STATES.has(pending.state ?? "")) {
    log.info(`deployment ${pending.id} is already in progress: waiting for it first`);
    await waitForDeployment(ws, summary.appName, pending.id, waitOpts(pending.id));
    app = await getApp(ws, summary.appName, config.target);
  }
  const base = {
    target: config.target,
    appName: summary.appName,
    sourceCodePath: summary.sourceCodePath,
    url,
  };
  const fingerprint = treeFingerprint(rendered.appDir);
  const record = readDeployRecord(rendered.bundleDir, config.target);
  const active = appStatusOf(app).activeDeployment;
  if (
    !options.force &&
    record?.appName === summary.appName &&
    record.fingerprint === fingerprint &&
    active?.id === record.deploymentId &&
    active.state === "SUCCEEDED" &&
    app.compute_status?.state === "ACTIVE"
  ) {
    log.info(
      `deployment ${active.id} already runs this app tree: nothing to ship (--force deploys it again)`,
    );
    return {
      ...base,
      deploymentId: active.id,
      state: active.state,
      message: "the app already runs the current app tree",
      computeStarted: false,
      by: "unchanged",
      durationMs: Date.now() - started,
    };
  }
  // Sync the current tree (and app.yaml). With lifecycle.started the CLI may deploy it itself.
  const before = deploymentIds(app);
  log.info(`databricks bundle deploy --target ${config.target} (uploads the current app tree)`);
  await cli.run(["bundle", "deploy", "--target", config.target, ...varArgs(rendered.variables)], {
    cwd: rendered.bundleDir,
    onLine: relay(log),
  });
  const synced = await getApp(ws, summary.appName, config.target);
  const byBundle = newDeployment(before, synced);
  const finish = async (
    deployment: DeploymentInfo | StartedDeployment,
    by: AppDeployResult["by"],
    computeStarted: boolean,
  ) => {
    let final: DeploymentInfo = deployment;
    if (options.wait && !TERMINAL_DEPLOYMENT_STATES.has(deployment.state ?? "")) {
      // Its first state was logged already: only changes from there.
      let lastState = deployment.state;
      const wait = {
        ...waitOpts(deployment.id),
        onState: (s: string, m: string | undefined) => {
          if (s !== lastState) log.info(`deployment ${deployment.id}: ${s}${m ? ` (${m})` : ""}`);
          lastState = s;
        },
      };
      // Ours: the SDK's waiter; one bundle deploy made: polled.
      final =
        "wait" in deployment
          ? await deployment.wait(wait)
          : await waitForDeployment(ws, summary.appName, deployment.id, wait);
    }
    if (TERMINAL_DEPLOYMENT_STATES.has(final.state ?? "") && final.state !== "SUCCEEDED") {
      const { lines, error } = url
        ? await lastLogLines(ws, url, options.logLines ?? 30)
        : { lines: [], error: "the app has no URL" };
      throw new DatabricksError(
        final.state === "CANCELLED" ? "deployment_cancelled" : "deployment_failed",
        `deployment ${deployment.id} of app ${summary.appName} ${final.state}: ${final.message ?? "(no message)"}${
          lines.length
            ? `\nlast ${lines.length} log lines:\n${lines.map((l) => `  ${l}`).join("\n")}`
            : `\n(no log lines could be read${error ? `: ${error}` : ""})`
        }`,
        `fix the cause above, then \`make app-deploy TARGET=${config.target}\`; \`make app-logs TARGET=${config.target}\` shows more`,
      );
    }
    return {
      ...base,
      deploymentId: deployment.id,
      state: final.state ?? "PENDING",
      message: final.message,
      computeStarted,
      by,
      durationMs: Date.now() - started,
    };
  };
  if (byBundle) {
    log.info(`bundle deploy deployed the app tree itself: deployment ${byBundle.id}`);
    writeDeployRecord(rendered.bundleDir, config.target, {
      appName: summary.appName,
      fingerprint,
      deploymentId: byBundle.id,
    });
    return await finish(byBundle, "bundle-deploy", false);
  }
  const compute = await ensureComputeActive(ws, summary.appName, {
    timeoutMs: options.timeoutMs,
    pollMs: options.pollMs,
    onState: (s, m) => log.info(`compute: ${s}${m ? ` (${m})` : ""}`),
  });
  const deployment = await startSnapshotDeployment(ws, summary.appName, summary.sourceCodePath);
  log.info(
    `deployment ${deployment.id}: ${deployment.state ?? "PENDING"} (SNAPSHOT of ${summary.sourceCodePath})`,
  );
  writeDeployRecord(rendered.bundleDir, config.target, {
    appName: summary.appName,
    fingerprint,
    deploymentId: deployment.id,
  });
  return await finish(deployment, "app-deploy", compute.started);
}
