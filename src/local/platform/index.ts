import pg from "pg";
import type { Config } from "../../config/load.js";
import { APP_SETTINGS } from "../../databricks/render.js";
import type { Logger } from "../../log/logger.js";
import { waitFor } from "../../retry.js";
import type { EmbeddedPostgresHandle } from "../postgres.js";
import { delegateRoleLogins } from "../postgres.js";
import type { LocalSecrets } from "../state.js";

export {
  DEFAULT_PROXY_LIMITS,
  LogBuffer,
  type LogEntry,
  type ProxyLimits,
  SESSION_COOKIE,
} from "./apps-proxy.js";

import { appUsePolicy } from "./app-permissions.js";
import {
  DEFAULT_PROXY_LIMITS,
  LogBuffer,
  localProxySourceAddress,
  type ProxyLimits,
  registerAppsProxy,
} from "./apps-proxy.js";
import { createInstancePicker, type InstanceRotation } from "./apps-proxy-routing.js";
import {
  DatabaseCredentials,
  type IssuedCredential,
  startLoginCheckService,
} from "./lakebase-credentials.js";
import { registerLogin } from "./login.js";
import { type ManagedMcp, registerManagedMcp, seedGrants } from "./managed-mcp.js";
import { onBehalfOfTokens } from "./obo-tokens.js";
import { registerOidc, registerOidcDiscovery, requireBearer } from "./oidc.js";
import { ApiError, PlatformServer } from "./server.js";
import { TokenStore } from "./tokens.js";
import {
  AuthCodes,
  BrowserSessions,
  DEFAULT_LOCAL_USER,
  type LocalUser,
  LocalUsers,
  type SavedBrowserSession,
} from "./users.js";

export interface StartPlatformOptions {
  config: Config;
  secrets: LocalSecrets;
  postgres: EmbeddedPostgresHandle;
  proxyPort: number;
  appPort: number;
  /** The login page's port (default: any free one); `local` keeps it across restarts of one state. */
  workspacePort?: number;
  /** Browser sessions (and their users) kept from the last run, and where to keep them (`local`). */
  keptSignIns?: {
    sessions: SavedBrowserSession[];
    users: LocalUser[];
    save(sessions: SavedBrowserSession[], users: LocalUser[]): void;
  };
  credentialTtlSeconds: number;
  /** Lifetime of user OAuth tokens (Databricks: one hour); shorter to rehearse expiry. */
  userTokenTtlSeconds?: number;
  /** The Apps proxy's cuts and whether it forwards `Authorization` (defaults: DEFAULT_PROXY_LIMITS). */
  proxy?: Partial<ProxyLimits>;
  /**
   * The app's user authorization scopes (`user_api_scopes`; `local up --user-scopes`): with any, the proxy
   * forwards each person's token limited to them in X-Forwarded-Access-Token; with none, no token.
   */
  userApiScopes?: string[];
  /** Databricks' managed MCP servers under `/api/2.0/mcp/` (managed-mcp.ts); default: offered, Genie 3 s. */
  managedMcp?: Partial<ManagedMcpSettings>;
  log: Logger;
}

export interface ManagedMcpSettings {
  /** False plays a workspace that does not offer them (`local up --managed-mcp off`). */
  offered: boolean;
  /** How long a Genie answer stays IN_PROGRESS (`local up --genie-delay`). */
  genieDelayMs: number;
}

export interface LocalPlatform {
  workspaceUrl: string;
  workspacePort: number;
  appUrl: string;
  /** Exactly what the Apps platform injects into the app's process (plus app.yaml's env). */
  appEnv: Record<string, string>;
  /** A fresh Lakebase credential for the app's role, as the credentials API issues them (tests use it to log in). */
  issueDatabaseCredential(ttlSeconds?: number): IssuedCredential;
  /** A fresh user token (as `databricks auth token` gives), for `email` or the default local user. */
  issueUserToken(email?: string, ttlSeconds?: number): { token: string; expiresAt: Date };
  /** The proxy's current cuts and Authorization behaviour; tests change them between calls. */
  proxyLimits: ProxyLimits;
  /** The managed MCP servers' settings; tests change them between calls. */
  managedMcp: ManagedMcpSettings;
  /** The app instances the proxy routes to (`local up --instances N`, a rolling restart changes it). */
  rotation: InstanceRotation;
  logs: LogBuffer;
  close(): Promise<void>;
}

const WORKSPACE_ID = "1234567890123456";

/**
 * The Databricks pieces the app and its users talk to, on this machine: a workspace API (OIDC,
 * Lakebase credentials, Apps API) and the Apps proxy on the user's port (bearer token required, the
 * login redirect without one, `/logz/stream`).
 */
export async function startPlatform(options: StartPlatformOptions): Promise<LocalPlatform> {
  const { config, secrets, postgres, log } = options;
  const tokens = new TokenStore();
  const logs = new LogBuffer();
  const workspace = new PlatformServer();
  const appHost = new PlatformServer();
  const endpoint = `projects/${config.lakebase.project}/branches/${config.lakebase.branch}/endpoints/primary`;
  const ttl = options.credentialTtlSeconds;
  const proxyPortUrl = `http://127.0.0.1:${options.proxyPort}`;
  const proxyOrigins = [proxyPortUrl, `http://localhost:${options.proxyPort}`];
  const userTtl = options.userTokenTtlSeconds ?? 3600;
  const proxyLimits: ProxyLimits = { ...DEFAULT_PROXY_LIMITS, ...options.proxy };
  const users = new LocalUsers();
  for (const u of options.keptSignIns?.users ?? []) users.add(u.email, u.name, u.id);
  const codes = new AuthCodes();
  const kept = options.keptSignIns;
  const sessions = new BrowserSessions(undefined, kept?.sessions, (list) => {
    const emails = new Set(list.map((s) => s.email));
    kept?.save(
      list,
      users.all().filter((u) => emails.has(u.email)),
    );
  });

  registerOidc(workspace, {
    tokens,
    clients: new Map([[secrets.clientId, secrets.clientSecret]]),
    userClients: new Map([[secrets.userClientId, secrets.userClientSecret]]),
    userFor: (hint) => (hint ? users.get(hint)?.email : users.first().email),
    userTokenTtlSeconds: () => userTtl,
    // One lifetime for every OAuth token (`--token-ttl`): the app's service-principal tokens expire as often as
    // the users', so a rehearsal sees the app renew them (the tokens of managed MCP calls above all).
    tokenTtlSeconds: () => userTtl,
  });
  const managedMcpSettings: ManagedMcpSettings = { offered: true, genieDelayMs: 3000, ...options.managedMcp };
  // The workspace's managed MCP servers, at the DATABRICKS_HOST the app is given (appEnv below).
  const managedMcp: ManagedMcp = registerManagedMcp(workspace, {
    tokens,
    grants: seedGrants(secrets.clientId, DEFAULT_LOCAL_USER.email),
    offered: () => managedMcpSettings.offered,
    genieDelayMs: () => managedMcpSettings.genieDelayMs,
    regionsFor: (subject) =>
      subject === secrets.clientId ? "all" : subject === DEFAULT_LOCAL_USER.email ? ["EMEA"] : ["AMER"],
  });
  registerOidcDiscovery(workspace);
  registerLogin(workspace, {
    users,
    codes,
    isAllowedRedirect: (uri) => proxyOrigins.some((o) => uri === `${o}/.auth/callback`),
  });

  // Every credential logs in as the app's role until its own expiry, however many were issued since
  // (PostgreSQL asks the check service at each login: lakebase-credentials.ts).
  const credentials = new DatabaseCredentials();
  const issueCredential = async (): Promise<IssuedCredential> => {
    const c = credentials.issue(secrets.clientId, ttl);
    log.debug(`databricks stand-in: issued a database credential valid for ${ttl} s`);
    return c;
  };
  const loginCheck = await startLoginCheckService(
    (user, password) => credentials.honours(user, password),
    (user, accepted) => {
      if (!accepted)
        log.debug(`databricks stand-in: refused a database login as ${user} (unknown or expired credential)`);
    },
  );
  try {
    await delegateRoleLogins(postgres.adminUrl(), secrets.clientId, loginCheck);
    await waitForDelegatedLogins(postgres, config.lakebase.database, secrets.clientId, credentials);
  } catch (err) {
    await loginCheck.close();
    throw err;
  }
  workspace.route("POST", "/api/2.0/postgres/credentials", async ({ req, body }) => {
    requireBearer(tokens, req);
    const asked = (body as { endpoint?: string } | undefined)?.endpoint;
    if (asked !== endpoint) throw new ApiError(404, "NOT_FOUND", `Endpoint '${asked}' does not exist.`);
    const c = await issueCredential();
    return { token: c.token, expire_time: c.expires.toISOString() };
  });
  workspace.route("POST", "/api/2.0/database/credentials", async ({ req, body }) => {
    requireBearer(tokens, req);
    const names = (body as { instance_names?: string[] } | undefined)?.instance_names ?? [];
    if (names.length !== 1 || names[0] !== config.lakebase.instanceName) {
      throw new ApiError(
        404,
        "RESOURCE_DOES_NOT_EXIST",
        `Database instance '${names.join(",")}' does not exist.`,
      );
    }
    const c = await issueCredential();
    return { token: c.token, expiration_time: c.expires.toISOString() };
  });
  workspace.route("GET", "/api/2.0/database/instances/:name", ({ req, params }) => {
    requireBearer(tokens, req);
    if (params.name !== config.lakebase.instanceName) {
      throw new ApiError(
        404,
        "RESOURCE_DOES_NOT_EXIST",
        `Database instance '${params.name}' does not exist.`,
      );
    }
    return {
      name: params.name,
      state: "AVAILABLE",
      read_write_dns: postgres.host,
      pg_version: "PG_VERSION_16",
    };
  });
  workspace.route("GET", "/api/2.0/apps/:name", ({ req, params }) => {
    requireBearer(tokens, req);
    if (params.name !== config.appName)
      throw new ApiError(
        404,
        "RESOURCE_DOES_NOT_EXIST",
        `App with name ${params.name} does not exist or is deleted.`,
      );
    return {
      name: config.appName,
      url: proxyPortUrl,
      app_status: { state: "RUNNING", message: "App is running" },
      compute_status: { state: "ACTIVE", message: "App compute is running." },
      service_principal_client_id: secrets.clientId,
    };
  });

  const onBehalfOf = onBehalfOfTokens(tokens, options.userApiScopes ?? [], () => userTtl);
  // The Apps proxy on the user's port (bearer token, login redirect, X-Forwarded-*, ws, /logz/stream).
  const source = await localProxySourceAddress();
  if (!source.distinct)
    log.warn(
      "the local Apps proxy connects from 127.0.0.1 (127.0.0.2 is not usable here): the app cannot tell it from other local programs, which can then claim any identity at the app port; on macOS `sudo ifconfig lo0 alias 127.0.0.2 up` makes them distinguishable (docs/identity.md)",
    );
  const rotation: InstanceRotation = { ports: [options.appPort], routing: "sticky" };
  const appsProxy = registerAppsProxy(appHost, {
    // One instance, or several by who calls (apps-proxy-routing.ts).
    pickInstance: createInstancePicker(() => rotation),
    sourceAddress: source.address,
    tokens,
    target: `http://127.0.0.1:${options.appPort}`,
    loginUrl: () => `${workspace.url}/login.html`,
    logs,
    users,
    codes,
    sessions,
    workspaceId: WORKSPACE_ID,
    origins: () => proxyOrigins,
    limits: () => proxyLimits,
    // As the real proxy: only those APP_CAN_USE / APP_CAN_MANAGE name (and the deployer) open the app.
    mayUse: appUsePolicy(
      config.values.APP_CAN_USE?.value,
      config.values.APP_CAN_MANAGE?.value,
      DEFAULT_LOCAL_USER.email,
    ).mayUse,
    appName: config.appName,
    // Only a workspace user has a token of their own to forward; a service principal calling the app has none.
    accessTokenFor: (user) => (users.get(user.email) ? onBehalfOf(user.email) : undefined),
  });

  try {
    await workspace.listen(options.workspacePort ?? 0);
    await appHost.listen(options.proxyPort);
  } catch (err) {
    await workspace.close();
    await loginCheck.close();
    throw err;
  }
  const workspacePort = Number(new URL(workspace.url).port);
  const appEnv: Record<string, string> = {
    DATABRICKS_APP_PORT: String(options.appPort),
    DATABRICKS_APP_NAME: config.appName,
    DATABRICKS_HOST: workspace.url,
    DATABRICKS_WORKSPACE_ID: WORKSPACE_ID,
    DATABRICKS_CLIENT_ID: secrets.clientId,
    DATABRICKS_CLIENT_SECRET: secrets.clientSecret,
    PGHOST: postgres.host,
    PGPORT: String(postgres.port),
    PGDATABASE: config.lakebase.database,
    PGUSER: secrets.clientId,
    // Lakebase requires TLS; the embedded server has none, the one difference `local` cannot remove.
    PGSSLMODE: "disable",
    PGAPPNAME: config.appName,
    METAMCP_DB_SCHEMA: config.schema,
    LAKEBASE_KIND: config.lakebase.kind,
    ...(config.lakebase.kind === "autoscaling"
      ? { LAKEBASE_ENDPOINT: endpoint }
      : { LAKEBASE_INSTANCE_NAME: config.lakebase.instanceName }),
    BETTER_AUTH_SECRET: secrets.betterAuthSecret,
    // The stand-in proxy's address is this host's own: the one peer whose identity headers the app trusts.
    METAMCP_TRUSTED_PROXY_ADDRESSES: source.address,
    // As app.yaml passes it (render.ts): only when not the runtime's default.
    ...(config.values.METAMCP_EMAIL_SIGNUP?.value === "on" ? { METAMCP_EMAIL_SIGNUP: "on" } : {}),
    // The runtime's settings as app.yaml carries them (render.ts), each only when set; the trusted proxy
    // address is the stand-in's own (below).
    ...Object.fromEntries(
      APP_SETTINGS.filter((n) => n !== "METAMCP_TRUSTED_PROXY_ADDRESSES" && config.values[n]?.value).map(
        (n) => [n, config.values[n]!.value],
      ),
    ),
    // The default local user stands for the deployer, who holds CAN_MANAGE on a real app: the one manager
    // allowed to add STDIO servers (docs/stdio-servers.md); another local user is refused, as on Databricks.
    METAMCP_APP_MANAGERS: DEFAULT_LOCAL_USER.email,
  };
  return {
    workspaceUrl: workspace.url,
    workspacePort,
    appUrl: proxyPortUrl,
    appEnv,
    issueDatabaseCredential(ttlSeconds = ttl) {
      return credentials.issue(secrets.clientId, ttlSeconds);
    },
    issueUserToken(email = DEFAULT_LOCAL_USER.email, ttlSeconds = userTtl) {
      const t = tokens.issue(users.get(email)?.email ?? users.add(email, email).email, ttlSeconds);
      return { token: t.token, expiresAt: new Date(t.expiresAt) };
    },
    proxyLimits,
    managedMcp: managedMcpSettings,
    rotation,
    logs,
    async close() {
      appsProxy.close();
      await managedMcp.close();
      await appHost.close();
      await workspace.close();
      await loginCheck.close();
    },
  };
}

/**
 * pg_reload_conf() only signals the postmaster: logins switch to the new rules a moment later. A probe
 * credential of our own logs in once they did (the role's old password would not match it).
 */
async function waitForDelegatedLogins(
  postgres: EmbeddedPostgresHandle,
  database: string,
  role: string,
  credentials: DatabaseCredentials,
): Promise<void> {
  const probe = credentials.issue(role, 60);
  try {
    await waitFor(
      async () => {
        const c = new pg.Client({
          host: postgres.host,
          port: postgres.port,
          database,
          user: role,
          password: probe.token,
        });
        c.on("error", () => {});
        try {
          await c.connect();
          return true;
        } finally {
          await c.end().catch(() => {});
        }
      },
      {
        timeoutMs: 20_000,
        intervalMs: 20,
        what: `PostgreSQL to check ${role}'s logins with the stand-in`,
        // Refused (pg_hba or the old password: 28000, 28P01) until the reload took effect.
        transient: (err) => ["28000", "28P01"].includes((err as { code?: string }).code ?? ""),
      },
    );
  } finally {
    credentials.revoke(probe.token);
  }
}
