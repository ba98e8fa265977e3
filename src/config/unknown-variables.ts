import { closest } from "fastest-levenshtein";
import { VARIABLES } from "./variables.js";

/**
 * Names of our prefixes that are read elsewhere, not through the variable table: the in-app runtime's
 * (app.yaml, docs/runtime.md), `local`'s internal ports, `connect`'s. A misspelt one of these is still caught.
 */
const READ_ELSEWHERE = [
  "METAMCP_APP_URL",
  "METAMCP_LISTEN_HOST",
  "METAMCP_DB_WAIT_SECONDS",
  "METAMCP_ROOT",
  "METAMCP_PG_PASSWORD_FILE",
  "METAMCP_BACKEND_PORT",
  "METAMCP_FRONTEND_PORT",
  "METAMCP_FIXED_PORTS",
  "METAMCP_ENDPOINT_IDENTITY_DEFAULT",
  "METAMCP_IDENTITY_SECRET",
  "METAMCP_API_KEY",
  "METAMCP_CONNECT_DIR",
  "LAKEBASE_ENDPOINT",
  // MetaMCP's own (its .env.example): someone copying theirs into ours is not making a typo.
  "APP_URL",
];

/**
 * Prefixes whose unknown names are typos of ours. `.env` is ours alone; the environment also holds other
 * programs' variables, so only the prefixes no one else uses are checked there (not APP_, LOCAL_, …).
 * DATABRICKS_ belongs to the Databricks CLI and SDKs: never checked.
 */
const DOTENV_PREFIXES = ["METAMCP_", "LAKEBASE_", "LOCAL_", "APP_", "BUILD_", "SECRET_"];
const ENV_PREFIXES = ["METAMCP_", "LAKEBASE_"];

function knownNames(): string[] {
  return [...VARIABLES.map((v) => v.env), ...READ_ELSEWHERE];
}

/** One line per unknown key of our prefixes, with the nearest known name (they would be ignored in silence). */
export function unknownVariableWarnings(
  dotenv: Record<string, string>,
  dotenvPath: string,
  env: Record<string, string | undefined>,
): string[] {
  const known = new Set(knownNames());
  const all = [...known];
  const seen = new Set<string>();
  const out: string[] = [];
  const check = (name: string, where: string, prefixes: string[]) => {
    if (known.has(name) || seen.has(name) || !prefixes.some((p) => name.startsWith(p))) return;
    seen.add(name);
    out.push(`${name} (${where}) is an unknown variable, ignored: did you mean ${closest(name, all)}?`);
  };
  for (const name of Object.keys(dotenv)) check(name, `in ${dotenvPath}`, DOTENV_PREFIXES);
  for (const name of Object.keys(env)) check(name, "in the environment", ENV_PREFIXES);
  return out;
}
