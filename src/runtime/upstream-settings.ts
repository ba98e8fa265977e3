import { registerSecret } from "../log/secrets.js";

/**
 * What our runtime sets for the settings MetaMCP's main branch added after v2.4.22 (read from its code,
 * docs/releases.md "Upstream main's new settings"); releases that predate a setting ignore it.
 *
 * - `EXTRA_TRUSTED_ORIGINS` (apps/backend/src/auth.ts: comma-separated origins added to better-auth's
 *   localhost-only defaults): the app's public origin, plus any the app's own environment lists (a custom
 *   domain in front of the app). better-auth also trusts its baseURL (APP_URL); saying it explicitly
 *   keeps sign-in working if upstream ever stops deriving it.
 * - `BOOTSTRAP_*` (apps/backend/src/lib/startup.ts: `BOOTSTRAP_ENABLE` defaults to true): on every start
 *   the bootstrap writes the sign-up switches (DISABLE_SIGNUP, DISABLE_SSO_SIGNUP) from the environment,
 *   `false` when unset — an app restart (every deploy, every compute restart) would silently re-open
 *   sign-up that an admin closed in the UI. Off unless the app's environment says `BOOTSTRAP_ENABLE=true`;
 *   then every `BOOTSTRAP_*` variable of the app's environment is passed on, and the ones that carry
 *   passwords or keys are registered as secrets (masked in every log line).
 * - `LOG_LEVEL` (apps/backend/src/utils/logger.ts): passed on when the app sets it.
 * - In-memory rate limits: configured per endpoint in the database (migration 0013), nothing to set here;
 *   counters live in each backend process, so with several app instances each counts on its own.
 */
export interface UpstreamSettings {
  /** Variables for MetaMCP's processes. */
  env: Record<string, string>;
  /** Values that must never appear in a log line (bootstrap passwords, API keys). */
  secrets: string[];
}

const TRUE = new Set(["1", "true", "yes", "y", "on"]);
/** BOOTSTRAP_* variables whose values carry credentials (upstream's names). */
const SECRET_BOOTSTRAP = new Set(["BOOTSTRAP_USER_PASSWORD", "BOOTSTRAP_USERS", "BOOTSTRAP_API_KEYS"]);

function origins(list: string | undefined): string[] {
  return (list ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean)
    .map((o) => {
      try {
        return new URL(o).origin;
      } catch {
        return o; // upstream accepts any string (e.g. a wildcard pattern); pass it on as given
      }
    });
}

/** Pure: the settings for MetaMCP's children, from the public URL and the app's own environment. */
export function upstreamSettings(
  appUrl: string,
  appEnv: Record<string, string | undefined>,
): UpstreamSettings {
  const env: Record<string, string> = {};
  const secrets: string[] = [];
  env.EXTRA_TRUSTED_ORIGINS = [
    ...new Set([...origins(appUrl), ...origins(appEnv.EXTRA_TRUSTED_ORIGINS)]),
  ].join(",");
  const optedIn = TRUE.has((appEnv.BOOTSTRAP_ENABLE ?? "").trim().toLowerCase());
  if (optedIn) {
    for (const [name, value] of Object.entries(appEnv)) {
      if (!name.startsWith("BOOTSTRAP_") || value === undefined) continue;
      env[name] = value;
      if (SECRET_BOOTSTRAP.has(name) && value) secrets.push(value);
    }
  }
  env.BOOTSTRAP_ENABLE = optedIn ? "true" : "false";
  if (appEnv.LOG_LEVEL) env.LOG_LEVEL = appEnv.LOG_LEVEL;
  return { env, secrets };
}

/** The runtime's hook: the settings for a child's environment, their secrets registered for masking. */
export function upstreamChildEnv(
  appUrl: string,
  appEnv: Record<string, string | undefined>,
): Record<string, string> {
  const settings = upstreamSettings(appUrl, appEnv);
  for (const s of settings.secrets) registerSecret(s);
  return settings.env;
}
