import type { Config } from "../config/load.js";
import { type AppStatus, appStatusOf, getApp } from "./apps.js";
import { connectWorkspace } from "./workspace.js";

/** app-status: the app's state, compute state, URL and its active and pending deployments. */
export async function appStatus(config: Config): Promise<AppStatus> {
  const ws = await connectWorkspace(config);
  return appStatusOf(await getApp(ws, config.appName, config.target));
}
