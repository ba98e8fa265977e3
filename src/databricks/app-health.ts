import type { Config } from "../config/load.js";
import { appPublicUrl } from "./apps.js";
import { type HealthAttempt, type HealthResult, pollHealth } from "./health.js";
import { connectWorkspace, oauthToken } from "./workspace.js";

/**
 * app-health: the app's public URL (an OAuth token first: the proxy refuses anything else), then
 * `<url>/metamcp/health` through the Apps proxy until healthy or the timeout.
 */
export async function appHealth(
  config: Config,
  options: { timeoutMs: number; intervalMs: number; onAttempt?: (a: HealthAttempt) => void },
): Promise<HealthResult> {
  const ws = await connectWorkspace(config);
  const appUrl = await appPublicUrl(ws, config.appName, config.target);
  return await pollHealth({ appUrl, token: () => oauthToken(ws), ...options });
}
