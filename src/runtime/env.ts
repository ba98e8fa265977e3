import path from "node:path";
import { LAKEBASE_KINDS, type LakebaseKind, pgIdentifier } from "../config/variables.js";
import { UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";

/**
 * The runtime's configuration: what the Apps platform injects plus what our app.yaml passes
 * (docs/design.md). The one place in runtime/ that reads the environment.
 */
export interface RuntimeEnv {
  appPort: number;
  appName: string;
  /** Workspace URL with scheme, no trailing slash. */
  host: string;
  clientId: string;
  clientSecret: string;
  /**
   * The public URL: METAMCP_APP_URL, which our deploy writes into app.yaml once the app exists (the
   * platform injects no URL); without it the runtime asks the Apps API, which the app's service principal
   * may not be allowed to read.
   */
  appUrl?: string;
  pg: { host: string; port: number; database: string; user: string; sslmode: string; appName: string };
  schema: string;
  lakebase: { kind: LakebaseKind; endpoint?: string; instanceName?: string };
  betterAuthSecret: string;
  /** The built MetaMCP tree inside the app tree. */
  metamcpRoot: string;
  /** How long to keep retrying an unreachable database at start (METAMCP_DB_WAIT_SECONDS, default 120). */
  dbWaitMs: number;
}

/** Upstream's fixed ports: Next rewrites to localhost:12009 and the backend listens there. */
export const BACKEND_PORT = 12009;
export const FRONTEND_PORT = 12008;

const PLACEHOLDER_SECRETS = new Set([
  "your-super-secret-key-change-this-in-production",
  "changeme",
  "change-me",
  "secret",
  "placeholder",
]);

export function normalizeUrl(value: string): string {
  const withScheme = /^https?:\/\//i.test(value) ? value : `https://${value}`;
  return withScheme.replace(/\/+$/, "");
}

export function readRuntimeEnv(env: Record<string, string | undefined>, runtimeDir: string): RuntimeEnv {
  const problems: string[] = [];
  const need = (name: string, why: string): string => {
    const v = env[name];
    if (v === undefined || v === "") {
      problems.push(`${name} is not set (${why})`);
      return "";
    }
    return v;
  };
  const port = Number(
    need("DATABRICKS_APP_PORT", "the Apps platform sets it: the only port its proxy reaches"),
  );
  const appName = need("DATABRICKS_APP_NAME", "set by the Apps platform");
  const host = need("DATABRICKS_HOST", "set by the Apps platform");
  const clientId = need("DATABRICKS_CLIENT_ID", "the app's service principal, set by the Apps platform");
  const clientSecret = need(
    "DATABRICKS_CLIENT_SECRET",
    "the app's service principal, set by the Apps platform",
  );
  registerSecret(clientSecret);
  const pgHost = need(
    "PGHOST",
    "injected by the app's Lakebase database resource: is the resource attached?",
  );
  const pgUser = need("PGUSER", "injected by the app's Lakebase database resource");
  const pgDatabase = need("PGDATABASE", "injected by the app's Lakebase database resource");
  const schema = env.METAMCP_DB_SCHEMA || "metamcp_app";
  const schemaCheck = pgIdentifier.safeParse(schema);
  if (!schemaCheck.success)
    problems.push(`METAMCP_DB_SCHEMA=${JSON.stringify(schema)} ${schemaCheck.error.issues[0]?.message}`);
  const kind = (env.LAKEBASE_KIND || "autoscaling") as LakebaseKind;
  if (!LAKEBASE_KINDS.includes(kind))
    problems.push(`LAKEBASE_KIND must be one of ${LAKEBASE_KINDS.join(", ")}`);
  const endpoint = env.LAKEBASE_ENDPOINT || undefined;
  const instanceName = env.LAKEBASE_INSTANCE_NAME || undefined;
  if (kind === "autoscaling" && !endpoint)
    problems.push("LAKEBASE_ENDPOINT is not set (app.yaml: valueFrom the app's postgres resource)");
  if (kind === "provisioned" && !instanceName)
    problems.push(
      "LAKEBASE_INSTANCE_NAME is not set (app.yaml passes it from our config; never guessed from PGHOST)",
    );
  const secret = env.BETTER_AUTH_SECRET ?? "";
  if (!secret) problems.push("BETTER_AUTH_SECRET is empty (app.yaml: valueFrom the app's secret resource)");
  else if (/\$\{[^}]*\}/.test(secret) || PLACEHOLDER_SECRETS.has(secret.toLowerCase()))
    problems.push(
      "BETTER_AUTH_SECRET is a placeholder, not a secret: check the app's secret resource and valueFrom",
    );
  else if (secret.length < 16) problems.push("BETTER_AUTH_SECRET is shorter than 16 characters");
  registerSecret(secret);
  if (env.DATABRICKS_APP_PORT && !(Number.isInteger(port) && port > 0))
    problems.push("DATABRICKS_APP_PORT is not a port");
  if (problems.length > 0) {
    throw new UserError("runtime_env", `cannot start: ${problems.join("; ")}`, 2);
  }
  return {
    appPort: port,
    appName,
    host: normalizeUrl(host),
    clientId,
    clientSecret,
    appUrl: env.METAMCP_APP_URL ? normalizeUrl(env.METAMCP_APP_URL) : undefined,
    pg: {
      host: pgHost,
      port: Number(env.PGPORT || 5432),
      database: pgDatabase,
      user: pgUser,
      sslmode: env.PGSSLMODE || "require",
      appName: env.PGAPPNAME || appName,
    },
    schema,
    lakebase: { kind, endpoint, instanceName },
    betterAuthSecret: secret,
    metamcpRoot: env.METAMCP_ROOT ? path.resolve(env.METAMCP_ROOT) : path.resolve(runtimeDir, "../metamcp"),
    dbWaitMs: Number(env.METAMCP_DB_WAIT_SECONDS || 120) * 1000,
  };
}
