import type pg from "pg";

/**
 * The runtime's side of "only trusted people make the app run code" and "what runs inside gets no secret it
 * doesn't need" (docs/stdio-servers.md; the backend's side is the stdio-servers and server-env patches):
 * the three settings, checked at start and passed to MetaMCP's backend; the names a server's `${NAME}` may
 * expand to, passed on so the backend has them; at start, one warning per STDIO server whose owner is not
 * an app manager.
 */
export const STDIO_SERVERS_ENV = "METAMCP_STDIO_SERVERS";
export const APP_MANAGERS_ENV = "METAMCP_APP_MANAGERS";
export const SERVER_ENV_ALLOW_ENV = "METAMCP_SERVER_ENV_ALLOW";
export const STDIO_POLICIES = ["managers", "everyone", "off"] as const;
export type StdioPolicy = (typeof STDIO_POLICIES)[number];

/** The same lists as src/patches/server-env-module.ts (a test keeps them equal; runtime/ can't import it). */
export const NEVER_EXPANDABLE_NAMES = ["BETTER_AUTH_SECRET", "DATABASE_URL"] as const;
export const NEVER_EXPANDABLE_PREFIXES = [
  "DATABRICKS_",
  "PG",
  "METAMCP_",
  "BOOTSTRAP_",
  "LAKEBASE_",
] as const;
export const ALLOW_ENTRY = /^[A-Za-z_][A-Za-z0-9_]*(_\*)?$/;

export function isNeverExpandable(name: string): boolean {
  return (
    (NEVER_EXPANDABLE_NAMES as readonly string[]).includes(name) ||
    NEVER_EXPANDABLE_PREFIXES.some((p) => name.startsWith(p))
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface AppManagers {
  /** Workspace users, lower-cased. */
  emails: string[];
  /** Service principals' application ids, lower-cased. */
  principals: string[];
  /** Anything else: a group's display name. The app can't read its members, so it counts for nobody. */
  groups: string[];
}

export function parseManagers(list: string | undefined): AppManagers {
  const out: AppManagers = { emails: [], principals: [], groups: [] };
  for (const raw of (list ?? "").split(",")) {
    const entry = raw.trim();
    if (!entry) continue;
    const lower = entry.toLowerCase();
    if (lower.includes("@")) out.emails.push(lower);
    else if (UUID.test(lower)) out.principals.push(lower);
    else out.groups.push(entry);
  }
  return out;
}

/** Allow-list entries that can never be honoured (the app's own secrets), for env.ts to refuse. */
export function refusedAllowEntries(list: string | undefined): string[] {
  return splitList(list).filter((e) => {
    if (!ALLOW_ENTRY.test(e)) return false; // reported as a bad form instead
    if (e.endsWith("_*")) {
      const prefix = e.slice(0, -1);
      return (
        isNeverExpandable(prefix) ||
        NEVER_EXPANDABLE_PREFIXES.some((p) => p.startsWith(prefix)) ||
        NEVER_EXPANDABLE_NAMES.some((n) => n.startsWith(prefix))
      );
    }
    return isNeverExpandable(e);
  });
}

export function splitList(list: string | undefined): string[] {
  return (list ?? "")
    .split(",")
    .map((e) => e.trim())
    .filter(Boolean);
}

/** Whether `name` is one the allow-list opens (the backend decides again, with the same rules). */
function allowedName(name: string, entries: string[]): boolean {
  if (isNeverExpandable(name)) return false;
  return entries.some((e) => (e.endsWith("_*") ? name.startsWith(e.slice(0, -1)) : name === e));
}

/**
 * What MetaMCP's backend needs of these settings: the settings themselves and the values of the variables the
 * allow-list opens (the backend gets a fixed environment, so an app variable such as GITHUB_TOKEN reaches
 * it only this way).
 */
export function stdioChildEnv(appEnv: Record<string, string | undefined>): Record<string, string> {
  const env: Record<string, string> = {
    [STDIO_SERVERS_ENV]: (appEnv[STDIO_SERVERS_ENV] ?? "").trim().toLowerCase() || "managers",
    [APP_MANAGERS_ENV]: appEnv[APP_MANAGERS_ENV] ?? "",
    [SERVER_ENV_ALLOW_ENV]: appEnv[SERVER_ENV_ALLOW_ENV] ?? "",
  };
  const entries = splitList(appEnv[SERVER_ENV_ALLOW_ENV]);
  for (const [name, value] of Object.entries(appEnv))
    if (value !== undefined && allowedName(name, entries)) env[name] = value;
  return env;
}

/** The start log's lines about the settings: the policy, and what happens to a group entry. */
export function describeStdioSettings(policy: StdioPolicy, managers: AppManagers): string[] {
  const lines: string[] = [];
  if (policy === "everyone")
    lines.push(
      `STDIO servers: everyone who can open the app may create them (${STDIO_SERVERS_ENV}=everyone): each runs a process inside the app that can read the app's secrets`,
    );
  else if (policy === "off")
    lines.push(`STDIO servers: off (${STDIO_SERVERS_ENV}=off): nobody may create or change one`);
  else {
    const n = managers.emails.length + managers.principals.length;
    lines.push(
      n > 0
        ? `STDIO servers: only the app's managers may create or change them (${managers.emails.length} user(s), ${managers.principals.length} service principal(s) in ${APP_MANAGERS_ENV})`
        : `STDIO servers: nobody may create or change them: ${APP_MANAGERS_ENV} names no user or service principal (set it, or ${STDIO_SERVERS_ENV}=everyone|off)`,
    );
  }
  for (const g of managers.groups)
    lines.push(
      `${APP_MANAGERS_ENV} entry "${g}" is a group: the app can't read a group's members (workspace SCIM gives a non-admin names and ids only), so its members are not managers for STDIO servers; list their emails`,
    );
  return lines;
}

export interface StdioServerOwner {
  name: string;
  /** The owner's email, or null for a public server (no owner). */
  owner: string | null;
}

/**
 * STDIO servers whose owner is not an app manager (a public server has no owner: listed too, nobody vouches
 * for it). Run after upstream's migrations; a release without the table or owners is handled.
 */
export async function stdioServersByOthers(
  client: pg.Client,
  schema: string,
  managers: AppManagers,
): Promise<StdioServerOwner[] | undefined> {
  return await serversByOthers(client, schema, managers, { where: "s.type::text = 'STDIO'" });
}

/**
 * The servers `where` (SQL on `s`, MetaMCP's mcp_servers) selects, and `keep` (given the row's url) keeps,
 * whose owner is not an app manager; a public server (no owner) counts as not a manager's.
 */
export async function serversByOthers(
  client: pg.Client,
  schema: string,
  managers: AppManagers,
  which: { where: string; keep?: (url: string | null) => boolean },
): Promise<StdioServerOwner[] | undefined> {
  const q = (name: string) => `"${schema}"."${name}"`;
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass($1) AS t", [q("mcp_servers")]);
  if (!exists.rows[0]?.t) return undefined;
  const columns = await client.query<{ column_name: string }>(
    "SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'mcp_servers'",
    [schema],
  );
  const has = (c: string) => columns.rows.some((r) => r.column_name === c);
  if (which.keep && !has("url")) return [];
  const url = which.keep ? ", s.url" : ", NULL AS url";
  const keep = (row: { url: string | null }) => !which.keep || which.keep(row.url);
  if (!has("user_id")) {
    const r = await client.query<{ name: string; url: string | null }>(
      `SELECT s.name${url} FROM ${q("mcp_servers")} s WHERE ${which.where} ORDER BY s.name`,
    );
    return r.rows.filter(keep).map((row) => ({ name: row.name, owner: null }));
  }
  const r = await client.query<{
    name: string;
    url: string | null;
    email: string | null;
    account_id: string | null;
  }>(
    `SELECT s.name${url}, u.email, a.account_id FROM ${q("mcp_servers")} s
       LEFT JOIN ${q("users")} u ON u.id = s.user_id
       LEFT JOIN ${q("accounts")} a ON a.user_id = u.id AND a.provider_id = 'databricks'
     WHERE ${which.where} ORDER BY s.name`,
  );
  const local = (s: string) => s.split("@")[0] ?? s;
  const byManager = new Map<string, boolean>();
  for (const row of r.rows.filter(keep)) {
    const email = (row.email ?? "").toLowerCase();
    const account = (row.account_id ?? "").toLowerCase();
    const manager =
      row.account_id !== null &&
      (managers.emails.includes(email) ||
        [email, local(email), account, local(account)].some((id) => id && managers.principals.includes(id)));
    const key = `${row.name}\u0000${row.email ?? ""}`;
    byManager.set(key, (byManager.get(key) ?? false) || manager);
  }
  return [...byManager.entries()]
    .filter(([, manager]) => !manager)
    .map(([key]) => {
      const [name, email] = key.split("\u0000");
      return { name: name!, owner: email || null };
    });
}

export function describeStdioServerByOther(s: StdioServerOwner): string {
  return `STDIO server "${s.name}" (owner: ${s.owner ?? "none, a public server"}) was not made by an app manager: it runs a process inside the app; review it in MetaMCP`;
}
