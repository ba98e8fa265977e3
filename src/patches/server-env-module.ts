/**
 * The backend code the `server-env` patch writes into MetaMCP's tree (OUR code, never MetaMCP's): which of the
 * backend's environment variables a server's `${NAME}` may expand to, and what the inspector's STDIO
 * processes inherit (docs/stdio-servers.md, "Secrets and server settings").
 */

export const SERVER_ENV_MODULE_FILE = "apps/backend/src/databricks-server-env.ts";
export const SERVER_ENV_ALLOW_VAR = "METAMCP_SERVER_ENV_ALLOW";

/**
 * Expandable without being listed: what MetaMCP's STDIO client gives every server process anyway (upstream's
 * `DEFAULT_INHERITED_ENV_VARS` on Linux, from the MCP SDK), so naming them reveals nothing new.
 */
export const ALWAYS_EXPANDABLE = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"] as const;
/** Never expandable, never inherited, whatever the allow-list says: the app's and MetaMCP's own secrets. */
export const NEVER_EXPANDABLE_NAMES = ["BETTER_AUTH_SECRET", "DATABASE_URL"] as const;
export const NEVER_EXPANDABLE_PREFIXES = [
  "DATABRICKS_",
  "PG",
  "METAMCP_",
  "BOOTSTRAP_",
  "LAKEBASE_",
] as const;

/** Whether `name` is one of the app's own secrets or settings (no allow-list entry can open it). */
export function isNeverExpandable(name: string): boolean {
  return (
    (NEVER_EXPANDABLE_NAMES as readonly string[]).includes(name) ||
    NEVER_EXPANDABLE_PREFIXES.some((p) => name.startsWith(p))
  );
}

/** One allow-list entry: a variable name, or a prefix ending in `_*` (`GITHUB_*`). */
export const ALLOW_ENTRY = /^[A-Za-z_][A-Za-z0-9_]*(_\*)?$/;

export function serverEnvModule(): string {
  return `// Written by metamcp-databricks (patch server-env). NOT MetaMCP's code. MetaMCP expands a server's env value
// \`\${NAME}\` from the backend's own environment, which holds the app's secrets. Only names the app allows
// (${SERVER_ENV_ALLOW_VAR}: names or PREFIX_*) and ${ALWAYS_EXPANDABLE.join(", ")} (every server process
// gets those anyway) expand; the app's secrets never do, whatever the list says. A refused name stays the
// literal \`\${NAME}\`, as upstream leaves a name it does not find.
const NEVER_NAMES = new Set<string>(${JSON.stringify(NEVER_EXPANDABLE_NAMES)});
const NEVER_PREFIXES: readonly string[] = ${JSON.stringify(NEVER_EXPANDABLE_PREFIXES)};
const ALWAYS = new Set<string>(${JSON.stringify(ALWAYS_EXPANDABLE)});

const ENTRIES = (process.env.${SERVER_ENV_ALLOW_VAR} ?? "")
  .split(",")
  .map((e) => e.trim())
  .filter(Boolean);
const ALLOWED_NAMES = new Set(ENTRIES.filter((e) => !e.endsWith("*")));
const ALLOWED_PREFIXES = ENTRIES.filter((e) => e.endsWith("_*")).map((e) => e.slice(0, -1));

function isSecretName(name: string): boolean {
  return NEVER_NAMES.has(name) || NEVER_PREFIXES.some((p) => name.startsWith(p));
}

// A copy of a secret under another name (\`MY_KEY=$BETTER_AUTH_SECRET\`) is the secret too.
function secretValues(): Set<string> {
  const values = new Set<string>();
  for (const [name, value] of Object.entries(process.env))
    if (value && value.length >= 8 && isSecretName(name)) values.add(value);
  return values;
}

export function isExpandableEnvName(name: string): boolean {
  if (isSecretName(name)) return false;
  if (!ALWAYS.has(name) && !ALLOWED_NAMES.has(name) && !ALLOWED_PREFIXES.some((p) => name.startsWith(p)))
    return false;
  const value = process.env[name];
  return value === undefined || !secretValues().has(value);
}

/** What \`\${name}\` expands to: the backend's value when the name is allowed, else undefined. */
export function databricksExpandableEnv(name: string): string | undefined {
  if (isExpandableEnvName(name)) return process.env[name];
  if (process.env[name] !== undefined)
    console.warn(\`databricks server env: \\\${\${name}} is not in ${SERVER_ENV_ALLOW_VAR}; left unexpanded\`);
  return undefined;
}

/** The backend's environment without the app's secrets: what upstream's inspector hands a STDIO process. */
export function databricksInheritableEnv(): Record<string, string | undefined> {
  const secrets = secretValues();
  const env: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(process.env))
    if (!isSecretName(name) && !(value && secrets.has(value))) env[name] = value;
  return env;
}
`;
}
