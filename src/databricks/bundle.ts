import { existsSync } from "node:fs";
import path from "node:path";
import { DatabricksError } from "../errors.js";
import type { DatabricksCli } from "./cli.js";
import { BUNDLE_KEYS } from "./render.js";

/** `--var name=value` for every bundle variable: the deployed values are the config's, whatever the file says. */
export function varArgs(variables: Record<string, string>): string[] {
  return Object.entries(variables).flatMap(([k, v]) => ["--var", `${k}=${v}`]);
}

export interface BundleSummary {
  filePath: string;
  appName: string;
  /** Where the synced app tree lands in the workspace: the app's source_code_path. */
  sourceCodePath: string;
  /** Where the bundle keeps its deployment state (`terraform.tfstate` or the direct engine's `resources.json`). */
  statePath?: string;
}

export interface SummaryJson {
  workspace?: { file_path?: string; state_path?: string; root_path?: string };
  resources?: {
    apps?: Record<
      string,
      { name?: string; source_code_path?: string; id?: string; modified_status?: string }
    >;
    postgres_projects?: Record<string, { id?: string; modified_status?: string }>;
  };
}

export function noBundleDeployment(target: string, why: string): DatabricksError {
  return new DatabricksError(
    "no_bundle_deployment",
    `no bundle deployment for target ${target}: run \`make bundle-deploy TARGET=${target}\` (${why})`,
    `make bundle-deploy TARGET=${target}`,
  );
}

/** `databricks bundle summary -o json` for the target (works before the first deploy too). */
export async function bundleSummaryJson(
  cli: DatabricksCli,
  bundleDir: string,
  target: string,
  variables: Record<string, string>,
): Promise<SummaryJson> {
  return await cli.json<SummaryJson>(["bundle", "summary", "--target", target, ...varArgs(variables)], {
    cwd: bundleDir,
  });
}

/**
 * Reads `databricks bundle summary -o json` for the target: the synced app tree's path and the app
 * name. A bundle never deployed for this target fails fast, saying which command to run.
 */
export async function readBundleSummary(
  cli: DatabricksCli,
  bundleDir: string,
  target: string,
  variables: Record<string, string>,
): Promise<BundleSummary> {
  if (!existsSync(path.join(bundleDir, "databricks.yml"))) {
    throw noBundleDeployment(target, `there is no ${path.join(bundleDir, "databricks.yml")}`);
  }
  const summary = await bundleSummaryJson(cli, bundleDir, target, variables);
  const app = summary.resources?.apps?.[BUNDLE_KEYS.app];
  const filePath = summary.workspace?.file_path;
  if (!app || !filePath) throw noBundleDeployment(target, "the bundle summary has no app");
  if (!app.id || app.modified_status === "created") {
    throw noBundleDeployment(target, `app ${app.name ?? "?"} is not deployed yet`);
  }
  const appDir = app.source_code_path ?? "";
  // The summary gives the resolved workspace path; an older CLI may still show the local relative one.
  const sourceCodePath = appDir.startsWith("/")
    ? appDir
    : path.posix.join(filePath, appDir.replace(/^\.\//, ""));
  return {
    filePath,
    appName: app.name ?? app.id,
    sourceCodePath,
    statePath: summary.workspace?.state_path,
  };
}
