import type { Config } from "../config/load.js";
import type { Logger } from "../log/logger.js";
import { type AppStatus, appStatusOf, readApp } from "./apps.js";
import { cliFor } from "./deployments.js";

/** app-status: `databricks apps get <name> -o json`, shown as the app's states, URL and deployments. */
export async function appStatus(config: Config, log: Logger): Promise<AppStatus> {
  return appStatusOf(await readApp(cliFor(config, log), config.appName, config.target));
}
