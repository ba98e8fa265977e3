import type * as apps from "@databricks/sdk-experimental/dist/apis/apps/index.js";
import type { Config } from "../config/load.js";
import type { Target } from "../config/variables.js";
import { DatabricksError, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import {
  appStatusOf,
  type DeploymentInfo,
  ensureComputeActive,
  getApp,
  startSnapshotDeployment,
  TERMINAL_DEPLOYMENT_STATES,
  waitForDeployment,
} from "./apps.js";
import { bundleSummaryJson, readBundleSummary, varArgs } from "./bundle.js";
import { DatabricksCli } from "./cli.js";
import { clearDeployRecord, readDeployRecord, treeFingerprint, writeDeployRecord } from "./deploy-record.js";
import { type Check, formatChecks, runDoctor } from "./doctor.js";
import { type AppLogEntry, streamLogs } from "./logs.js";
import { APP_URL_ENV, type RenderedBundle, renderBundle, writeBundle } from "./render.js";
import {
  authSecretExists,
  deleteOurSecretScope,
  ensureAuthSecret,
  type ScopeRemoval,
  type SecretOutcome,
  secretMissing,
} from "./secrets.js";
import {
  apiFailure,
  connectWorkspace,
  isNotFound,
  normalizeAppUrl,
  oauthToken,
  type Workspace,
} from "./workspace.js";

type AppsApp = apps.App;

export type ConfigFor = (target: Target) => Config;

export function cliFor(config: Config, log: Logger): DatabricksCli {
  return new DatabricksCli(config.databricksCli, config.profile, log);
}

export interface BundleDeployResult {
  target: string;
  appName: string;
  bundleDir: string;
  cliVersion: string;
  secret: SecretOutcome;
  secretScope: string;
  scopeCreated: boolean;
  /** True when this run created the app (two `bundle deploy` runs: see {@link bundleDeploy}). */
  firstDeploy: boolean;
  appUrl?: string;
  /** The deployment `bundle deploy` made itself (it deploys code when it creates, starts or changes the app). */
  codeDeployment?: DeploymentInfo;
  checks: Check[];
  durationMs: number;
}

/** Streams the CLI's own progress lines through our logger (masked, tagged). */
function relay(log: Logger) {
  return (line: string) => log.info(`  ${line}`);
}

/** The app when it exists (as the deploying user, who may read it), else undefined. */
async function findApp(ws: Workspace, name: string): Promise<AppsApp | undefined> {
  try {
    return await ws.client.apps.get({ name });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw apiFailure(`reading app ${name}`, err);
  }
}

function deploymentIds(app: AppsApp | undefined): Set<string> {
  return new Set(
    [app?.active_deployment?.deployment_id, app?.pending_deployment?.deployment_id].filter((x): x is string =>
      Boolean(x),
    ),
  );
}

/** A deployment on `after` that was not there before: the one `bundle deploy` made itself. */
function newDeployment(before: Set<string>, after: AppsApp): DeploymentInfo | undefined {
  const status = appStatusOf(after);
  for (const d of [status.activeDeployment, status.pendingDeployment]) if (d && !before.has(d.id)) return d;
  return undefined;
}

/**
 * The bundle's deployment state must belong to the direct engine: with `bundle.engine: direct` and an
 * existing terraform state the CLI still deploys with terraform, which refuses `lifecycle.started`.
 */
async function checkStateEngine(
  cli: DatabricksCli,
  ws: Workspace,
  rendered: RenderedBundle,
  target: string,
  profile: string,
): Promise<void> {
  const summary = await bundleSummaryJson(cli, rendered.bundleDir, target, rendered.variables);
  const statePath = summary.workspace?.state_path;
  if (!statePath) return;
  const exists = async (p: string) => {
    try {
      await ws.client.workspace.getStatus({ path: p });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw apiFailure(`reading ${p}`, err);
    }
  };
  if ((await exists(`${statePath}/terraform.tfstate`)) && !(await exists(`${statePath}/resources.json`))) {
    throw new DatabricksError(
      "terraform_state",
      `the bundle for target ${target} was deployed with the terraform engine (${statePath}/terraform.tfstate): it cannot deploy lifecycle.started, which needs the direct engine`,
      `move it to the direct engine once, from ${rendered.bundleDir}: \`databricks bundle deployment migrate --target ${target} --profile ${profile}\` with the same --var flags bundle-deploy passes (\`--debug\` shows them), then \`make bundle-deploy TARGET=${target}\``,
    );
  }
}

/**
 * bundle-deploy, in the order a real workspace accepts on the first try and on every later one:
 * 1. preflight (doctor, incl. Lakebase), then the secret scope and BETTER_AUTH_SECRET through the API,
 *    BEFORE the bundle: the app's secret resource points at that key when the platform creates the app;
 * 2. the app's public URL: it exists only once the app does, so the very first deploy creates the app
 *    stopped (`lifecycle.started: false`, no code deployed), reads its URL, writes it into app.yaml;
 * 3. `bundle deploy` with `lifecycle.started: true`: the CLI starts the app and deploys the synced tree
 *    itself when it creates, starts or changes the app, and waits for it. Later runs are one `bundle deploy`.
 */
export async function bundleDeploy(
  config: Config,
  configFor: ConfigFor,
  log: Logger,
): Promise<BundleDeployResult> {
  const started = Date.now();
  const cli = cliFor(config, log);
  const other = configFor(config.target === "dev" ? "prod" : "dev");
  log.info("preflight: doctor");
  const report = await runDoctor(config, cli, other);
  if (!report.ok || !report.workspace) {
    throw new UserError(
      "preflight_failed",
      `preflight failed:\n${formatChecks(report.checks.filter((c) => !c.ok))}`,
      2,
      "fix the checks above, then run bundle-deploy again (`make doctor` repeats them)",
    );
  }
  const ws = report.workspace;
  const { scope, key } = config.secret;
  const secret = await ensureAuthSecret(ws, scope, key);
  log.info(
    `${secret.scopeCreated ? `created secret scope ${scope}; ` : ""}${
      secret.secret === "created"
        ? `generated BETTER_AUTH_SECRET into ${scope}/${key} (not shown)`
        : `BETTER_AUTH_SECRET already in ${scope}/${key}: kept`
    }`,
  );
  const existing = await findApp(ws, config.appName);
  const firstDeploy = existing === undefined;
  let appUrl = existing?.url ? normalizeAppUrl(existing.url) : undefined;
  let rendered = renderBundle(config, configFor, { appUrl, started: !firstDeploy });
  for (const w of rendered.warnings) log.warn(w);
  const written = writeBundle(rendered);
  log.info(`rendered ${written.databricksYml} and ${written.appYaml}`);
  await checkStateEngine(cli, ws, rendered, config.target, config.profile);
  const deploy = async (what: string) => {
    log.info(`databricks bundle deploy --target ${config.target} (${what})`);
    await cli.run(["bundle", "deploy", "--target", config.target, ...varArgs(rendered.variables)], {
      cwd: rendered.bundleDir,
      onLine: relay(log),
    });
  };
  log.info(`preflight: databricks bundle validate --target ${config.target}`);
  await cli.run(["bundle", "validate", "--target", config.target, ...varArgs(rendered.variables)], {
    cwd: rendered.bundleDir,
  });
  if (firstDeploy) {
    await deploy(
      "first deploy: creates the app stopped and its Lakebase resources; the first upload takes a while",
    );
    const app = await getApp(ws, config.appName, config.target);
    if (!app.url)
      throw new DatabricksError(
        "app_without_url",
        `app ${config.appName} was created but the Apps API gives it no URL yet`,
        `run \`make bundle-deploy TARGET=${config.target}\` again in a minute`,
      );
    appUrl = normalizeAppUrl(app.url);
    rendered = renderBundle(config, configFor, { appUrl, started: true });
    writeBundle(rendered);
    log.info(`app URL ${appUrl} written into app.yaml (${APP_URL_ENV})`);
  }
  const before = deploymentIds(existing);
  const fingerprint = treeFingerprint(rendered.appDir);
  await deploy(
    firstDeploy ? "starts the app and deploys its code" : "uploads the app tree, applies the settings",
  );
  const after = await getApp(ws, config.appName, config.target);
  const codeDeployment = newDeployment(before, after);
  if (codeDeployment) {
    log.info(
      `bundle deploy deployed the app tree: deployment ${codeDeployment.id} ${codeDeployment.state ?? ""}`,
    );
    if (codeDeployment.state === "SUCCEEDED")
      writeDeployRecord(rendered.bundleDir, config.target, {
        appName: config.appName,
        fingerprint,
        deploymentId: codeDeployment.id,
      });
  }
  return {
    target: config.target,
    appName: config.appName,
    bundleDir: rendered.bundleDir,
    cliVersion: await cli.version(),
    secret: secret.secret,
    secretScope: scope,
    scopeCreated: secret.scopeCreated,
    firstDeploy,
    appUrl,
    codeDeployment,
    checks: report.checks,
    durationMs: Date.now() - started,
  };
}

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
  const finish = async (deployment: DeploymentInfo, by: AppDeployResult["by"], computeStarted: boolean) => {
    let final = deployment;
    if (options.wait && !TERMINAL_DEPLOYMENT_STATES.has(deployment.state ?? "")) {
      let lastState = deployment.state;
      final = await waitForDeployment(ws, summary.appName, deployment.id, {
        ...waitOpts(deployment.id),
        onState: (s, m) => {
          if (s !== lastState) log.info(`deployment ${deployment.id}: ${s}${m ? ` (${m})` : ""}`);
          lastState = s;
        },
      });
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

/**
 * destroy (dev only): `bundle destroy` removes the app, the bundle's files and what the bundle created
 * (a Lakebase project it created is purged: `purge_on_delete`); an attached project is not in the bundle
 * and stays. Then the secret scope, when we created it.
 */
export async function destroyDev(
  config: Config,
  rendered: RenderedBundle,
  log: Logger,
): Promise<{ scope: ScopeRemoval }> {
  const cli = cliFor(config, log);
  await cli.requireVersion();
  await cli.run(
    ["bundle", "destroy", "--target", config.target, "--auto-approve", ...varArgs(rendered.variables)],
    {
      cwd: rendered.bundleDir,
      onLine: relay(log),
    },
  );
  clearDeployRecord(rendered.bundleDir, config.target);
  const ws = await connectWorkspace(config);
  const scope = await deleteOurSecretScope(ws, config.secret.scope);
  log.info(
    scope === "deleted"
      ? `deleted secret scope ${config.secret.scope} (created by bundle-deploy)`
      : scope === "kept-not-ours"
        ? `kept secret scope ${config.secret.scope}: bundle-deploy did not create it`
        : `secret scope ${config.secret.scope} was already gone`,
  );
  return { scope };
}
