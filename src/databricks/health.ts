import { DatabricksError } from "../errors.js";
import { waitFor } from "../retry.js";

export interface HealthAttempt {
  status?: number;
  latencyMs: number;
  /** Why this attempt was not healthy. */
  problem?: string;
}

export interface HealthResult {
  healthy: boolean;
  url: string;
  status?: number;
  latencyMs?: number;
  attempts: number;
  elapsedMs: number;
  problem?: string;
}

export interface HealthOptions {
  /** The app's public URL (normalised, no trailing slash). */
  appUrl: string;
  /** A fresh OAuth token for each attempt (the SDK refreshes it). */
  token: () => Promise<string>;
  timeoutMs: number;
  intervalMs?: number;
  onAttempt?: (a: HealthAttempt) => void;
}

export const HEALTH_PATH = "/metamcp/health";

/**
 * Why the app says it is unhealthy: our runtime's router answers `503 {"status":"unhealthy","reason":…}`
 * when no database connection opens (expired credential, database down); "MetaMCP is starting" while it
 * starts. Other bodies (a proxy's HTML error page) are not shown.
 */
export function unhealthyReason(body: string): string | undefined {
  try {
    const reason = (JSON.parse(body) as { reason?: unknown }).reason;
    if (typeof reason === "string" && reason) return reason.slice(0, 500);
  } catch {
    // not JSON
  }
  const text = body.trim();
  return text && text.length <= 200 && !text.startsWith("<") && !text.includes("\n") ? text : undefined;
}

/**
 * Polls `<app url>/metamcp/health` through the Apps proxy (`waitFor`, src/retry.ts) until it answers 200 or the timeout
 * passes. A redirect is the proxy's login page: the token was not accepted, which no amount of waiting fixes,
 * so it ends the wait at once.
 */
export async function pollHealth(options: HealthOptions): Promise<HealthResult> {
  const url = `${options.appUrl}${HEALTH_PATH}`;
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const intervalMs = options.intervalMs ?? 2000;
  let attempts = 0;
  let last: HealthAttempt = { latencyMs: 0 };
  const attempt = async (): Promise<boolean> => {
    attempts++;
    const token = await options.token();
    const t0 = performance.now();
    try {
      const remaining = Math.max(1000, Math.min(10_000, deadline - Date.now()));
      const res = await fetch(url, {
        headers: { authorization: `Bearer ${token}` },
        redirect: "manual",
        signal: AbortSignal.timeout(remaining),
      });
      const body = await res.text().catch(() => "");
      const latencyMs = performance.now() - t0;
      if (res.status === 200) {
        last = { status: 200, latencyMs };
        options.onAttempt?.(last);
        return true;
      }
      if (res.status >= 300 && res.status < 400) {
        const location = res.headers.get("location") ?? "";
        throw new DatabricksError(
          "redirected_to_login",
          `${url} answered ${res.status}, a redirect to the login page (${location.split("?")[0]}): the Apps proxy did not accept the token, so the app's health is unknown`,
          "use an OAuth profile: `databricks auth login --profile <profile>` (PATs are not accepted), or a client-id/secret profile",
        );
      }
      const reason = unhealthyReason(body);
      last = { status: res.status, latencyMs, problem: `HTTP ${res.status}${reason ? `: ${reason}` : ""}` };
    } catch (err) {
      if (err instanceof DatabricksError) throw err;
      last = { latencyMs: performance.now() - t0, problem: (err as Error).message };
    }
    options.onAttempt?.(last);
    // No attempt starts that could not finish before the deadline: the answer is "not healthy" now.
    if (Date.now() + intervalMs > deadline) throw new OutOfTime();
    return false;
  };
  const result = (healthy: boolean): HealthResult => ({
    healthy,
    url,
    status: last.status,
    latencyMs: last.latencyMs,
    attempts,
    elapsedMs: Date.now() - started,
    ...(healthy ? {} : { problem: last.problem }),
  });
  try {
    await waitFor(async () => ((await attempt()) ? true : undefined), {
      intervalMs,
      timeoutMs: options.timeoutMs + intervalMs,
      what: "the app's health",
      onTimeout: () => new OutOfTime(),
    });
    return result(true);
  } catch (err) {
    if (err instanceof OutOfTime) return result(false);
    throw err;
  }
}

/** The next attempt would end past the deadline. */
class OutOfTime extends Error {}
