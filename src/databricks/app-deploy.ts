import { setTimeout as sleep } from "node:timers/promises";
import type { Config } from "../config/load.js";
import { DatabricksError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { waitFor } from "../retry.js";
import { readAppLogs } from "./app-logs.js";
import {
  type AppRecord,
  appStatusOf,
  type DeploymentInfo,
  deploymentInfo,
  readApp,
  readDeployment,
  TERMINAL_DEPLOYMENT_STATES,
} from "./apps.js";
import { readBundleSummary, varArgs } from "./bundle.js";
import { cliErrorMessage, type DatabricksCli } from "./cli.js";
import { readDeployRecord, treeFingerprint, writeDeployRecord } from "./deploy-record.js";
import { type ConfigFor, cliFor, deploymentIds, relay } from "./deployments.js";
import { BUNDLE_KEYS, renderBundle, writeBundle } from "./render.js";
import { authSecretExists, secretMissing } from "./secrets.js";
import { connectWorkspace, normalizeAppUrl } from "./workspace.js";

export interface AppDeployOptions {
  wait: boolean;
  timeoutMs: number;
  /** Between looks at the app while `bundle run` works (and at a deployment an earlier run left going). */
  pollMs?: number;
  /** How many log lines to show when a deployment fails. */
  logLines?: number;
  /** Deploy even when the active deployment already shipped this tree. */
  force?: boolean;
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
  /** Who made the deployment: us (`bundle run`), or nobody (the tree already runs). */
  by: "app-deploy" | "unchanged";
  durationMs: number;
}

/**
 * The last lines of the app's log stream (`apps logs --tail-lines N`). Best effort: a failed deployment
 * is reported either way, with the reason the lines are missing when they are.
 */
export async function lastLogLines(
  cli: DatabricksCli,
  name: string,
  target: string,
  count: number,
): Promise<{ lines: string[]; error?: string }> {
  const lines: string[] = [];
  try {
    await readAppLogs(cli, name, target, {
      follow: false,
      tail: count,
      signal: AbortSignal.timeout(30_000),
      onEntry: (e) => lines.push(`[${e.source}] ${e.message.trimEnd()}`),
    });
  } catch (err) {
    return { lines: [], error: err instanceof Error ? err.message : String(err) };
  }
  return { lines: lines.slice(-count) };
}

function deploymentTimeout(name: string, d: DeploymentInfo | undefined, timeoutMs: number) {
  return new DatabricksError(
    "deployment_timeout",
    `${d ? `deployment ${d.id}` : "the deployment"} of app ${name} is still ${d?.state ?? "not done"} after ${Math.round(timeoutMs / 1000)} s`,
    "it may still finish: `make app-status` shows it",
  );
}

/** How `bundle run` ended, as far as app-deploy tells outcomes apart. */
type RunOutcome =
  | { how: "done" }
  | { how: "failed"; error: unknown }
  | { how: "cancelled" | "started" | "timeout" };

/**
 * `databricks bundle run <app key>` (bundle/run/app.go): it starts the app when its compute is stopped,
 * waits while it starts, makes one SNAPSHOT deployment of source_code_path (waiting for one IN_PROGRESS
 * first) and follows it until SUCCEEDED or FAILED. Meanwhile we look at the app every `pollMs` for what
 * the CLI does not do: it ignores `--no-wait` for apps (we stop it once the deployment exists; the
 * deployment goes on) and follows a CANCELLED deployment until its 20-minute timeout (we stop it then).
 */
async function runApp(
  cli: DatabricksCli,
  log: Logger,
  args: { bundleDir: string; target: string; variables: Record<string, string>; name: string },
  before: Set<string>,
  options: AppDeployOptions,
): Promise<{ outcome: RunOutcome; deployment?: DeploymentInfo }> {
  const stop = new AbortController();
  let outcome: RunOutcome | undefined;
  let deployment: DeploymentInfo | undefined;
  const end = (o: RunOutcome) => {
    outcome ??= o;
    stop.abort();
  };
  const timer = setTimeout(() => end({ how: "timeout" }), options.timeoutMs);
  const run = cli
    .run(["bundle", "run", BUNDLE_KEYS.app, "--target", args.target, ...varArgs(args.variables)], {
      cwd: args.bundleDir,
      onLine: relay(log),
      signal: stop.signal,
    })
    .then(
      () => end({ how: "done" }),
      (error: unknown) => end({ how: "failed", error }),
    );
  const watch = async () => {
    while (!stop.signal.aborted) {
      await sleep(options.pollMs ?? 3000, undefined, { signal: stop.signal }).catch(() => undefined);
      if (stop.signal.aborted) return;
      try {
        if (!deployment) {
          const pending = deploymentInfo((await readApp(cli, args.name, args.target)).pending_deployment);
          if (pending && !before.has(pending.id)) deployment = pending;
        } else deployment = await readDeployment(cli, args.name, deployment.id);
      } catch {
        // A look that failed decides nothing: the CLI's own outcome counts.
        continue;
      }
      if (deployment && !options.wait) end({ how: "started" });
      else if (deployment?.state === "CANCELLED") end({ how: "cancelled" });
    }
  };
  await Promise.all([run, watch()]);
  clearTimeout(timer);
  return { outcome: outcome ?? { how: "done" }, deployment };
}

/**
 * app-deploy ships the current app tree and reports the outcome:
 * - a tree that already runs (the deployment that shipped it is the active one) is not deployed again
 *   (`--force` does); when that deployment is still in flight (an earlier `--no-wait`), it is waited for;
 * - otherwise `bundle sync` uploads the tree and `bundle run` deploys it (see {@link runApp}).
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
  const name = summary.appName;
  log.info(`bundle: app ${name}, source ${summary.sourceCodePath}`);
  const ws = await connectWorkspace(config);
  if (!(await authSecretExists(ws, config.secret.scope, config.secret.key)))
    throw secretMissing(config.secret.scope, config.secret.key, config.target);
  let app: AppRecord = await readApp(cli, name, config.target);
  const url = app.url ? normalizeAppUrl(app.url) : undefined;
  const rendered = renderBundle(config, configFor, { appUrl: url });
  writeBundle(rendered);
  const base = { target: config.target, appName: name, sourceCodePath: summary.sourceCodePath, url };
  const fingerprint = treeFingerprint(rendered.appDir);
  const record = readDeployRecord(rendered.bundleDir, config.target);
  const shipped =
    !options.force && record?.appName === name && record.fingerprint === fingerprint
      ? record.deploymentId
      : undefined;
  const pending = appStatusOf(app).pendingDeployment;
  if (shipped && pending?.id === shipped && !TERMINAL_DEPLOYMENT_STATES.has(pending.state ?? "")) {
    log.info(`deployment ${pending.id} is already in progress: waiting for it first`);
    await waitFor(
      async () => {
        const d = await readDeployment(cli, name, pending.id);
        return TERMINAL_DEPLOYMENT_STATES.has(d.state ?? "") ? d : undefined;
      },
      {
        intervalMs: options.pollMs ?? 3000,
        timeoutMs: options.timeoutMs,
        what: `deployment ${pending.id}`,
        onTimeout: () => deploymentTimeout(name, pending, options.timeoutMs),
      },
    );
    app = await readApp(cli, name, config.target);
  }
  const status = appStatusOf(app);
  const active = status.activeDeployment;
  if (shipped && active?.id === shipped && active.state === "SUCCEEDED" && status.computeState === "ACTIVE") {
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
  const bundleArgs = ["--target", config.target, ...varArgs(rendered.variables)];
  log.info(`databricks bundle sync --target ${config.target} (uploads the current app tree)`);
  await cli.run(["bundle", "sync", ...bundleArgs], { cwd: rendered.bundleDir, onLine: relay(log) });
  // bundle/run/app.go isAppComputeStopped: no compute status, STOPPED or ERROR.
  const computeStarted = ["STOPPED", "ERROR", undefined].includes(status.computeState);
  log.info(
    `databricks bundle run ${BUNDLE_KEYS.app} --target ${config.target} (${computeStarted ? "starts the app, " : ""}deploys the synced tree${options.wait ? ", waits for the outcome" : ""})`,
  );
  const { outcome, deployment } = await runApp(
    cli,
    log,
    { bundleDir: rendered.bundleDir, target: config.target, variables: rendered.variables, name },
    deploymentIds(app),
    options,
  );
  const done = (d: DeploymentInfo): AppDeployResult => {
    writeDeployRecord(rendered.bundleDir, config.target, { appName: name, fingerprint, deploymentId: d.id });
    return {
      ...base,
      deploymentId: d.id,
      state: d.state ?? "PENDING",
      message: d.message,
      computeStarted,
      by: "app-deploy",
      durationMs: Date.now() - started,
    };
  };
  if (outcome.how === "started" && deployment) {
    log.info(`deployment ${deployment.id}: ${deployment.state ?? "PENDING"} (not waiting: --no-wait)`);
    return done(deployment);
  }
  if (outcome.how === "timeout") throw deploymentTimeout(name, deployment, options.timeoutMs);
  const failed = async (state: "FAILED" | "CANCELLED", message: string) => {
    const { lines, error } =
      state === "FAILED"
        ? await lastLogLines(cli, name, config.target, options.logLines ?? 30)
        : { lines: [] };
    return new DatabricksError(
      state === "CANCELLED" ? "deployment_cancelled" : "deployment_failed",
      `${deployment ? `deployment ${deployment.id}` : "the deployment"} of app ${name} ${state}: ${message}${
        state === "CANCELLED"
          ? ""
          : lines.length
            ? `\nlast ${lines.length} log lines:\n${lines.map((l) => `  ${l}`).join("\n")}`
            : `\n(no log lines could be read${error ? `: ${error}` : ""})`
      }`,
      `fix the cause above, then \`make app-deploy TARGET=${config.target}\`; \`make app-logs TARGET=${config.target}\` shows more`,
    );
  };
  if (outcome.how === "cancelled") throw await failed("CANCELLED", deployment?.message ?? "(no message)");
  if (outcome.how === "failed") {
    const why = cliErrorMessage(outcome.error);
    const failure = why && /failed to reach SUCCEEDED, got FAILED: (.*)$/s.exec(why);
    if (failure) throw await failed("FAILED", failure[1] ?? "");
    if (why && /in progress/i.test(why)) {
      // bundle run already waited for any deployment IN_PROGRESS and tried once more.
      const last = active?.state ? ` (the active deployment, ${active.id}, is ${active.state})` : "";
      throw new DatabricksError(
        "deployment_in_progress",
        `a deployment of app ${name} is already in progress, though none shows as pending${last} (${why})`,
        "after a failed deployment the platform can take 2-5 minutes to settle: wait until `make app-status` shows compute ACTIVE and no pending deployment, then run app-deploy again",
      );
    }
    throw outcome.error;
  }
  const now = appStatusOf(await readApp(cli, name, config.target)).activeDeployment;
  if (!now || deploymentIds(app).has(now.id))
    throw new DatabricksError(
      "bad_response",
      `bundle run succeeded but app ${name} shows no new active deployment`,
      "see `make app-status`",
    );
  log.info(`deployment ${now.id}: ${now.state ?? "?"}`);
  return done(now);
}
