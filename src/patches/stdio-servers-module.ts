/**
 * The backend code the `stdio-servers` patch writes into MetaMCP's tree (OUR code, never MetaMCP's): who may
 * create or change a STDIO server, i.e. make MetaMCP start a process inside the app (docs/stdio-servers.md).
 * Kept as text: it imports MetaMCP's own modules (`./db/index`, `@trpc/server`) and is compiled by upstream's
 * build.
 */

/** Where MetaMCP's backend finds our module (relative to apps/backend/src). */
export const STDIO_SERVERS_MODULE_FILE = "apps/backend/src/databricks-stdio-servers.ts";
/** Who may: `managers` (default), `everyone`, `off`. */
export const STDIO_SERVERS_VAR = "METAMCP_STDIO_SERVERS";
/** The app's managers: workspace users' emails, service principals' application ids (and groups, ignored). */
export const APP_MANAGERS_VAR = "METAMCP_APP_MANAGERS";
export const STDIO_POLICIES = ["managers", "everyone", "off"] as const;
export type StdioPolicy = (typeof STDIO_POLICIES)[number];

/** What a refused person reads in MetaMCP's UI (the TRPCError's message). */
export const REFUSED_MANAGERS =
  "Only the app's managers may create or change STDIO servers: a STDIO server runs a process inside the app. Ask an app manager, or use a Streamable HTTP or SSE server.";
export const REFUSED_OFF = `STDIO servers are turned off in this app (${STDIO_SERVERS_VAR}=off): a STDIO server runs a process inside the app. Use a Streamable HTTP or SSE server.`;

/** Who may add a server on the app's workspace that runs as its service principal (docs/databricks-tools.md). */
export const APP_IDENTITY_VAR = "METAMCP_DATABRICKS_APP_IDENTITY";
export const REFUSED_APP_IDENTITY_MANAGERS =
  "Only the app's managers may add or change a server on this app's Databricks workspace that runs as the app's service principal: it can reach everything the app was granted in Unity Catalog. Ask an app manager.";
export const REFUSED_APP_IDENTITY_OFF = `Servers on this app's Databricks workspace that run as the app's service principal are turned off (${APP_IDENTITY_VAR}=off).`;

export function stdioServersModule(schema: string): string {
  const users = JSON.stringify(`"${schema}"."users"`);
  const accounts = JSON.stringify(`"${schema}"."accounts"`);
  const servers = JSON.stringify(`"${schema}"."mcp_servers"`);
  return `// Written by metamcp-databricks (patch stdio-servers). NOT MetaMCP's code. A STDIO server makes MetaMCP
// start a process inside the app, as the app's own user: it can read every secret of the app's processes.
// So who may create or change one is the app's choice (${STDIO_SERVERS_VAR}: managers, the default; everyone;
// off), checked here for MetaMCP's tRPC create / bulk import / update and its inspector proxy.
// Managers are ${APP_MANAGERS_VAR} (the bundle's CAN_MANAGE list): emails and service principal application
// ids. Groups cannot count: the app's service principal may not read group members (docs/stdio-servers.md).
// The same checks guard the other way to use the app's own powers: a server on the app's Databricks workspace
// that runs as its service principal (${APP_IDENTITY_VAR}, same three values; docs/databricks-tools.md).
import type { IncomingMessage, ServerResponse } from "node:http";

import { TRPCError } from "@trpc/server";
import { type SQL, sql } from "drizzle-orm";

import { db } from "./db/index";

type Policy = "managers" | "everyone" | "off";

const POLICY: Policy = (() => {
  const v = (process.env.${STDIO_SERVERS_VAR} ?? "managers").trim().toLowerCase();
  // Anything we do not know fails closed (the runtime refuses such a value before MetaMCP starts).
  return v === "managers" || v === "everyone" ? v : v === "" ? "managers" : "off";
})();

const APP_IDENTITY: Policy = (() => {
  const v = (process.env.${APP_IDENTITY_VAR} ?? "managers").trim().toLowerCase();
  return v === "managers" || v === "everyone" ? v : v === "" ? "managers" : "off";
})();

// The app's workspace, as the databricks-tools fetch wrapper matches it: a server URL on this origin is
// called with the app's service principal token unless it asks for the person's (#identity=user).
const WORKSPACE_ORIGIN: string | undefined = (() => {
  const h = process.env.DATABRICKS_HOST;
  if (!h) return undefined;
  try {
    return new URL(/^https?:\\/\\//i.test(h) ? h : \`https://\${h}\`).origin;
  } catch {
    return undefined;
  }
})();

function runsAsApp(url: unknown): boolean {
  if (!WORKSPACE_ORIGIN || typeof url !== "string" || url.trim() === "") return false;
  let u: URL;
  try {
    u = new URL(url.trim());
  } catch {
    return false;
  }
  return u.origin === WORKSPACE_ORIGIN && new URLSearchParams(u.hash.slice(1)).get("identity") !== "user";
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ENTRIES = (process.env.${APP_MANAGERS_VAR} ?? "")
  .split(",")
  .map((e) => e.trim().toLowerCase())
  .filter(Boolean);
const MANAGER_EMAILS = new Set(ENTRIES.filter((e) => e.includes("@")));
const MANAGER_PRINCIPALS = new Set(ENTRIES.filter((e) => UUID.test(e)));

// drizzle's node-postgres driver answers execute() with pg's QueryResult; other drivers with the rows.
async function rows<T>(query: SQL): Promise<T[]> {
  // biome-ignore lint: the result type differs per drizzle driver
  const result: any = await db.execute(query);
  return (Array.isArray(result) ? result : (result?.rows ?? [])) as T[];
}

const localPart = (s: string) => s.split("@")[0] ?? s;

/**
 * A manager is a MetaMCP user the Apps proxy signed in (a \`databricks\` account: an email/password account
 * with the same address proves nothing) whose email, or service principal application id, is listed.
 */
export async function isAppManager(userId: string | undefined | null): Promise<boolean> {
  if (!userId) return false;
  const found = await rows<{ email: string | null; account_id: string | null }>(
    sql\`SELECT u.email, a.account_id FROM \${sql.raw(${users})} u JOIN \${sql.raw(${accounts})} a ON a.user_id = u.id AND a.provider_id = 'databricks' WHERE u.id = \${userId}\`,
  );
  for (const row of found) {
    const email = (row.email ?? "").toLowerCase();
    const account = (row.account_id ?? "").toLowerCase();
    if (email && MANAGER_EMAILS.has(email)) return true;
    for (const id of [email, localPart(email), account, localPart(account)])
      if (id && MANAGER_PRINCIPALS.has(id)) return true;
  }
  return false;
}

/** Why \`userId\` may not make MetaMCP run a process, or undefined when it may. */
export async function stdioRefusal(userId: string | undefined | null): Promise<string | undefined> {
  if (POLICY === "everyone") return undefined;
  if (POLICY === "off") return ${JSON.stringify(REFUSED_OFF)};
  try {
    if (await isAppManager(userId)) return undefined;
  } catch (error) {
    console.error("databricks stdio servers: cannot read the caller's identity; refusing:", error);
  }
  return ${JSON.stringify(REFUSED_MANAGERS)};
}

// MetaMCP treats a server without a type as STDIO (its client and its bulk import both default to it).
const isStdio = (type: unknown) => !type || String(type) === "STDIO";

/** Why \`userId\` may not add a server that runs as the app's service principal, or undefined when it may. */
export async function appIdentityRefusal(userId: string | undefined | null): Promise<string | undefined> {
  if (APP_IDENTITY === "everyone") return undefined;
  if (APP_IDENTITY === "off") return ${JSON.stringify(REFUSED_APP_IDENTITY_OFF)};
  try {
    if (await isAppManager(userId)) return undefined;
  } catch (error) {
    console.error("databricks tools: cannot read the caller's identity; refusing:", error);
  }
  return ${JSON.stringify(REFUSED_APP_IDENTITY_MANAGERS)};
}

async function refuseAppIdentity(userId: string | undefined | null, what: string): Promise<void> {
  const reason = await appIdentityRefusal(userId);
  if (!reason) return;
  console.warn(\`databricks tools: refused \${what} for user \${userId ?? "(unknown)"} (${APP_IDENTITY_VAR}=\${APP_IDENTITY})\`);
  throw new TRPCError({ code: "FORBIDDEN", message: reason });
}

async function refuse(userId: string | undefined | null, what: string): Promise<void> {
  const reason = await stdioRefusal(userId);
  if (!reason) return;
  console.warn(\`databricks stdio servers: refused \${what} for user \${userId ?? "(unknown)"} (${STDIO_SERVERS_VAR}=\${POLICY})\`);
  throw new TRPCError({ code: "FORBIDDEN", message: reason });
}

/** tRPC create and bulk import: any STDIO server among them needs the right to run code. */
export async function assertMayCreateServers(
  servers: ReadonlyArray<{ type?: unknown; url?: unknown } | null | undefined>,
  userId: string | undefined | null,
): Promise<void> {
  if (servers.some((s) => isStdio(s?.type))) await refuse(userId, "a STDIO server");
  if (servers.some((s) => runsAsApp(s?.url))) await refuseAppIdentity(userId, "a workspace server as the app");
}

/** tRPC update: a server that is (or becomes) STDIO can only be changed by someone allowed to run code. */
export async function assertMayUpdateServer(
  input: { uuid?: unknown; type?: unknown; url?: unknown } | null | undefined,
  userId: string | undefined | null,
): Promise<void> {
  let type = input?.type;
  let url = input?.url;
  if ((!type || url === undefined) && input?.uuid) {
    const found = await rows<{ type: string | null; url: string | null }>(
      sql\`SELECT type::text AS type, url FROM \${sql.raw(${servers})} WHERE uuid::text = \${String(input.uuid)}\`,
    );
    if (!found[0]) return; // upstream answers "not found" itself
    type = type || found[0].type;
    if (url === undefined) url = found[0].url;
  }
  if (isStdio(type)) await refuse(userId, "a change to a STDIO server");
  if (runsAsApp(url)) await refuseAppIdentity(userId, "a change to a workspace server that runs as the app");
}

/**
 * MetaMCP's inspector proxy (/mcp-proxy/server/*) starts \`?transportType=STDIO&command=…\` as given: the same
 * right as a STDIO server. Mounted right after upstream's session check, which puts the user on the request.
 */
export async function databricksStdioInspectorGuard(
  req: IncomingMessage & { query?: Record<string, unknown>; user?: { id?: string } },
  res: ServerResponse,
  next: () => void,
): Promise<void> {
  const t = req.query?.transportType;
  const target = req.query?.url;
  if ((Array.isArray(target) ? target : [target]).some((u) => runsAsApp(u))) {
    const refused = await appIdentityRefusal(req.user?.id);
    if (refused) {
      console.warn(\`databricks tools: refused an inspector connection as the app for user \${req.user?.id ?? "(unknown)"}\`);
      res.statusCode = 403;
      res.setHeader("content-type", "application/json; charset=utf-8");
      res.end(JSON.stringify({ error: "Forbidden", message: refused }));
      return;
    }
  }
  if (!(Array.isArray(t) ? t : [t]).some((v) => String(v) === "STDIO")) return next();
  const reason = await stdioRefusal(req.user?.id);
  if (!reason) return next();
  console.warn(\`databricks stdio servers: refused an inspector STDIO process for user \${req.user?.id ?? "(unknown)"}\`);
  res.statusCode = 403;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.end(JSON.stringify({ error: "Forbidden", message: reason }));
}
`;
}
