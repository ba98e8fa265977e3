import type { Config } from "../config/load.js";
import type { Target } from "../config/variables.js";
import { DatabricksError, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { ensureComputeActive, getApp, startSnapshotDeployment, waitForDeployment } from "./apps.js";
import { readBundleSummary, varArgs } from "./bundle.js";
import { DatabricksCli } from "./cli.js";
import { type Check, formatChecks, runDoctor } from "./doctor.js";
import { type AppLogEntry, streamLogs } from "./logs.js";
import { type RenderedBundle, renderBundle, writeBundle } from "./render.js";
import { authSecretExists, ensureAuthSecret, type SecretOutcome } from "./secrets.js";
import { connectWorkspace, normalizeAppUrl, oauthToken, type Workspace } from "./workspace.js";

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
  checks: Check[];
  durationMs: number;
}

/** Streams the CLI's own progress lines through our logger (masked, tagged). */
function relay(log: Logger) {
  return (line: string) => log.info(`  ${line}`);
}

/**
 * bundle-deploy: render the files, preflight (doctor, `bundle validate`), `bundle deploy` with our
 * variables, then make sure the auth secret exists in the scope the bundle manages.
 */
export async function bundleDeploy(
  config: Config,
  configFor: ConfigFor,
  log: Logger,
): Promise<BundleDeployResult> {
  const started = Date.now();
  const rendered = renderBundle(config, configFor);
  for (const w of rendered.warnings) log.warn(w);
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
  const written = writeBundle(rendered);
  log.info(`rendered ${written.databricksYml} and ${written.appYaml}`);
  const vars = varArgs(rendered.variables);
  log.info(`preflight: databricks bundle validate --target ${config.target}`);
  await cli.run(["bundle", "validate", "--target", config.target, ...vars], { cwd: rendered.bundleDir });
  log.info(
    `databricks bundle deploy --target ${config.target} (uploads the app tree; the first upload takes a while)`,
  );
  await cli.run(["bundle", "deploy", "--target", config.target, ...vars], {
    cwd: rendered.bundleDir,
    onLine: relay(log),
  });
  // The deployed scope name: development mode may prefix names the bundle manages.
  const summary = await readBundleSummary(cli, rendered.bundleDir, config.target, rendered.variables);
  const scope = summary.secretScope ?? config.secret.scope;
  const secret = await ensureAuthSecret(report.workspace, scope, config.secret.key, config.target);
  log.info(
    secret === "created"
      ? `generated BETTER_AUTH_SECRET into ${scope}/${config.secret.key} (not shown)`
      : `BETTER_AUTH_SECRET already in ${scope}/${config.secret.key}: kept`,
  );
  return {
    target: config.target,
    appName: config.appName,
    bundleDir: rendered.bundleDir,
    cliVersion: await cli.version(),
    secret,
    secretScope: scope,
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
  durationMs: number;
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

/**
 * app-deploy: the synced tree from `bundle summary` (fail fast without a bundle deployment), compute
 * started if stopped, a SNAPSHOT deployment, then its state changes until it ends.
 */
export async function appDeploy(
  config: Config,
  rendered: RenderedBundle,
  log: Logger,
  options: AppDeployOptions,
): Promise<AppDeployResult> {
  const started = Date.now();
  const cli = cliFor(config, log);
  await cli.requireVersion();
  const summary = await readBundleSummary(cli, rendered.bundleDir, config.target, rendered.variables);
  log.info(`bundle: app ${summary.appName}, source ${summary.sourceCodePath}`);
  const ws = await connectWorkspace(config);
  const scope = summary.secretScope ?? config.secret.scope;
  if (!(await authSecretExists(ws, scope, config.secret.key))) {
    throw new DatabricksError(
      "secret_missing",
      `${scope}/${config.secret.key} (BETTER_AUTH_SECRET) is missing: the app would refuse to start`,
      `run \`make bundle-deploy TARGET=${config.target}\` (it generates the secret once)`,
    );
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
  const app = await getApp(ws, summary.appName, config.target);
  const url = app.url ? normalizeAppUrl(app.url) : undefined;
  const base = {
    target: config.target,
    appName: summary.appName,
    deploymentId: deployment.id,
    sourceCodePath: summary.sourceCodePath,
    url,
    computeStarted: compute.started,
  };
  if (!options.wait) {
    return {
      ...base,
      state: deployment.state ?? "PENDING",
      message: deployment.message,
      durationMs: Date.now() - started,
    };
  }
  let lastState = deployment.state;
  const final = await waitForDeployment(ws, summary.appName, deployment.id, {
    timeoutMs: options.timeoutMs,
    pollMs: options.pollMs,
    onState: (s, m) => {
      if (s !== lastState) log.info(`deployment ${deployment.id}: ${s}${m ? ` (${m})` : ""}`);
      lastState = s;
    },
  });
  if (final.state !== "SUCCEEDED") {
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
  return { ...base, state: final.state, message: final.message, durationMs: Date.now() - started };
}

/** destroy: `bundle destroy` of the dev target (app, bundle files, and what the bundle created). */
export async function destroyDev(config: Config, rendered: RenderedBundle, log: Logger): Promise<void> {
  const cli = cliFor(config, log);
  await cli.requireVersion();
  await cli.run(
    ["bundle", "destroy", "--target", config.target, "--auto-approve", ...varArgs(rendered.variables)],
    {
      cwd: rendered.bundleDir,
      onLine: relay(log),
    },
  );
}
