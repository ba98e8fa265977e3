import type * as apps from "@databricks/sdk-experimental/dist/apis/apps/index.js";
import type { Config } from "../config/load.js";
import type { Target } from "../config/variables.js";
import type { Logger } from "../log/logger.js";
import { appStatusOf, type DeploymentInfo } from "./apps.js";
import { DatabricksCli } from "./cli.js";
import { apiFailure, isNotFound, type Workspace } from "./workspace.js";

/** What bundle-deploy and app-deploy share: the CLI for a config, and telling the bundle's own deployment apart. */
type AppsApp = apps.App;

export type ConfigFor = (target: Target) => Config;

export function cliFor(config: Config, log: Logger): DatabricksCli {
  return new DatabricksCli(config.databricksCli, config.profile, log);
}

/** Streams the CLI's own progress lines through our logger (masked, tagged). */
export function relay(log: Logger) {
  return (line: string) => log.info(`  ${line}`);
}

/** The app when it exists (as the deploying user, who may read it), else undefined. */
export async function findApp(ws: Workspace, name: string): Promise<AppsApp | undefined> {
  try {
    return await ws.client.apps.get({ name });
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw apiFailure(`reading app ${name}`, err);
  }
}

export function deploymentIds(app: AppsApp | undefined): Set<string> {
  return new Set(
    [app?.active_deployment?.deployment_id, app?.pending_deployment?.deployment_id].filter((x): x is string =>
      Boolean(x),
    ),
  );
}

/** A deployment on `after` that was not there before: the one `bundle deploy` made itself. */
export function newDeployment(before: Set<string>, after: AppsApp): DeploymentInfo | undefined {
  const status = appStatusOf(after);
  for (const d of [status.activeDeployment, status.pendingDeployment]) if (d && !before.has(d.id)) return d;
  return undefined;
}
