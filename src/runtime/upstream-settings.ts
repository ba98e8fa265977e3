import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
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

/**
 * Email/password sign-up on Databricks (docs/identity.md). Everyone who can open the app is already signed
 * in with their workspace identity, so by default (`METAMCP_EMAIL_SIGNUP=off`) nobody needs MetaMCP's own
 * sign-up form: at start the runtime sets MetaMCP's own "disable sign-up" setting (config row
 * DISABLE_SIGNUP) unless one is there already — an admin's choice in MetaMCP's settings page is kept.
 * `on` leaves MetaMCP's default (open) and takes back only our own earlier default (recognised by its
 * description: MetaMCP's settings page rewrites the description when an admin saves the switch).
 *
 * Only on releases whose sign-up hook tells SSO sign-ups from email/password ones (v2.4.14 and later): on
 * older ones that one switch refuses EVERY new user, the workspace identities included, so it is left alone.
 */
export type EmailSignup = "off" | "on";
export const EMAIL_SIGNUP_ENV = "METAMCP_EMAIL_SIGNUP";
const SIGNUP_KEY = "DISABLE_SIGNUP";
export const OUR_SIGNUP_DESCRIPTION =
  "Whether new user signup is disabled (set by metamcp-databricks: email/password sign-up is off by default on Databricks; change it here)";

export function emailSignupSetting(appEnv: Record<string, string | undefined>): EmailSignup {
  const v = (appEnv[EMAIL_SIGNUP_ENV] ?? "").trim().toLowerCase();
  return TRUE.has(v) ? "on" : "off";
}

/** Whether the built backend's sign-up hook has MetaMCP's separate SSO switch (read from its bundle). */
export function backendSeparatesSsoSignup(backendDir: string): boolean {
  const dist = path.join(backendDir, "dist");
  let names: string[];
  try {
    names = readdirSync(dist).filter((n) => /\.(m?js)$/.test(n));
  } catch {
    return false;
  }
  return names.some((n) => readFileSync(path.join(dist, n), "utf8").includes("isSsoSignupDisabled"));
}

export type SignupOutcome =
  | "disabled" // we set DISABLE_SIGNUP=true now
  | "kept" // a value was there (an admin's, or ours from an earlier start): left as it is
  | "opened" // `on`: our own earlier default was taken back
  | "untouched" // `on`, nothing of ours to take back
  | "one-switch" // this release has one switch for every new user: left alone
  | "no-config"; // this release has no config table

export async function applyEmailSignupDefault(
  client: pg.Client,
  schema: string,
  setting: EmailSignup,
  separatesSso: boolean,
): Promise<SignupOutcome> {
  const table = `"${schema}"."config"`;
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [table]);
  if (!exists.rows[0]?.t) return "no-config";
  if (setting === "on") {
    const r = await client.query(`DELETE FROM ${table} WHERE id = $1 AND description = $2`, [
      SIGNUP_KEY,
      OUR_SIGNUP_DESCRIPTION,
    ]);
    return (r.rowCount ?? 0) > 0 ? "opened" : "untouched";
  }
  if (!separatesSso) return "one-switch";
  const r = await client.query(
    `INSERT INTO ${table} (id, value, description) VALUES ($1, 'true', $2) ON CONFLICT (id) DO NOTHING`,
    [SIGNUP_KEY, OUR_SIGNUP_DESCRIPTION],
  );
  return (r.rowCount ?? 0) > 0 ? "disabled" : "kept";
}

/** One log line for the outcome, saying how to change it. */
export function describeSignupOutcome(outcome: SignupOutcome): string {
  switch (outcome) {
    case "disabled":
      return `email/password sign-up: off (MetaMCP's "disable sign-up" set; workspace identities still sign in; ${EMAIL_SIGNUP_ENV}=on to open it)`;
    case "kept":
      return `email/password sign-up: MetaMCP's "disable sign-up" is already set; left as it is`;
    case "opened":
      return `email/password sign-up: on (${EMAIL_SIGNUP_ENV}=on; our earlier default taken back)`;
    case "untouched":
      return `email/password sign-up: as MetaMCP's settings say (${EMAIL_SIGNUP_ENV}=on)`;
    case "one-switch":
      return `email/password sign-up: off (the app refuses MetaMCP's sign-up form; MetaMCP's own switch is left alone: on this release it would refuse every new user, workspace identities included; ${EMAIL_SIGNUP_ENV}=on to open it)`;
    case "no-config":
      return "email/password sign-up: this MetaMCP release has no config table; left as it is";
  }
}
