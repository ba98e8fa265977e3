import type { Config } from "../config/load.js";
import { DatabricksError, EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { type DeploymentInfo, getApp } from "./apps.js";
import { bundleSummaryJson, type SummaryJson, varArgs } from "./bundle.js";
import { treeFingerprint, writeDeployRecord } from "./deploy-record.js";
import { type ConfigFor, cliFor, deploymentIds, findApp, newDeployment, relay } from "./deployments.js";
import { type Check, formatChecks, runDoctor } from "./doctor.js";
import { APP_URL_ENV, type RenderedBundle, renderBundle, writeBundle, writeDatabricksYml } from "./render.js";
import { ensureAuthSecret, type SecretOutcome } from "./secrets.js";
import { bundleStateOf } from "./taken-names.js";
import { apiFailure, isNotFound, normalizeAppUrl, type Workspace } from "./workspace.js";

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

/**
 * The bundle's deployment state must belong to the direct engine: with `bundle.engine: direct` and an
 * existing terraform state the CLI still deploys with terraform, which refuses `lifecycle.started`.
 */
async function checkStateEngine(
  summary: SummaryJson,
  ws: Workspace,
  rendered: RenderedBundle,
  target: string,
  profile: string,
): Promise<void> {
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
  log.info("preflight: doctor (auth type, CLI version, Lakebase, taken names)");
  // databricks.yml first (a local file; the workspace is untouched): its deployment state, as `bundle
  // summary` shows it, tells our names from taken ones. One summary serves the engine check too.
  let summary: SummaryJson | undefined;
  const probe = renderBundle(config, configFor);
  const report = await runDoctor(config, cli, other, {
    bundleDir: probe.bundleDir,
    state: async () => {
      writeDatabricksYml(probe);
      summary = await bundleSummaryJson(cli, probe.bundleDir, config.target, probe.variables);
      return bundleStateOf(summary);
    },
  });
  if (!report.ok || !report.workspace) {
    const failed = report.checks.filter((c) => !c.ok);
    throw new UserError(
      "preflight_failed",
      `preflight failed:\n${formatChecks(failed)}`,
      failed.some((c) => c.databricksSide) ? EXIT.databricks : EXIT.input,
      "nothing was changed: fix the checks above, then run bundle-deploy again (`make doctor` repeats them)",
    );
  }
  const ws = report.workspace;
  const { scope, key } = config.secret;
  const secret = await ensureAuthSecret(ws, cli, scope, key);
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
  summary ??= await bundleSummaryJson(cli, rendered.bundleDir, config.target, rendered.variables);
  await checkStateEngine(summary, ws, rendered, config.target, config.profile);
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
