import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { varArgs } from "./bundle.js";
import { clearDeployRecord } from "./deploy-record.js";
import { type ConfigFor, cliFor, relay } from "./deployments.js";
import { renderBundle } from "./render.js";
import { deleteOurSecretScope, type ScopeRemoval } from "./secrets.js";
import { connectWorkspace } from "./workspace.js";

export interface DestroyResult {
  target: string;
  /** What was deleted, in words. */
  destroyed: string;
  secretScope: ScopeRemoval;
  /** What stays (an attached Lakebase project or instance), in words. */
  kept?: string;
  /** The secret scope stays because bundle-deploy did not create it. */
  scopeKept?: string;
}

/**
 * destroy (dev only): asks (through `confirm`, unless `yes`), then `bundle destroy` removes the app, the
 * bundle's files and what the bundle created (a Lakebase project it created is purged: `purge_on_delete`);
 * an attached project is not in the bundle and stays. Then the secret scope, when we created it.
 */
export async function destroy(
  config: Config,
  configFor: ConfigFor,
  log: Logger,
  options: { yes: boolean; confirm: (question: string) => Promise<boolean> },
): Promise<DestroyResult> {
  if (config.target !== "dev") {
    throw new UserError(
      "destroy_prod_refused",
      `destroy only removes the dev target, not ${config.target}: prod data lives there`,
      EXIT.input,
      `if you really mean it, run \`databricks bundle destroy --target ${config.target}\` yourself from ${path.dirname(config.appDir)}`,
    );
  }
  const rendered = renderBundle(config, configFor);
  const lb = config.lakebase;
  const ownsProject = lb.create && lb.kind === "autoscaling";
  const what = `app ${config.appName}, its bundle files, the secret scope ${config.secret.scope} if bundle-deploy created it${
    ownsProject ? ` and the Lakebase project ${lb.project} with its data (purged, not recoverable)` : ""
  }`;
  const kept = ownsProject
    ? undefined
    : `kept: Lakebase ${lb.kind === "autoscaling" ? `project ${lb.project}` : `instance ${lb.instanceName}`} (attached, not created by the bundle)`;
  if (!options.yes && !(await options.confirm(`Delete ${what} (profile ${config.profile})?`))) {
    throw new UserError(
      "not_confirmed",
      "destroy not confirmed: nothing deleted",
      EXIT.input,
      "add --yes to skip the question",
    );
  }
  // bundle destroy needs the bundle definition; the state lives in the workspace.
  mkdirSync(rendered.bundleDir, { recursive: true });
  writeFileSync(path.join(rendered.bundleDir, "databricks.yml"), rendered.databricksYml);
  const cli = cliFor(config, log);
  await cli.requireVersion();
  await cli.run(
    ["bundle", "destroy", "--target", config.target, "--auto-approve", ...varArgs(rendered.variables)],
    { cwd: rendered.bundleDir, onLine: relay(log) },
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
  return {
    target: config.target,
    destroyed: what,
    secretScope: scope,
    ...(kept ? { kept } : {}),
    ...(scope === "kept-not-ours"
      ? { scopeKept: `kept: secret scope ${config.secret.scope} (bundle-deploy did not create it)` }
      : {}),
  };
}
