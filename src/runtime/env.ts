import { isIP } from "node:net";
import path from "node:path";
import { EXIT, UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";
import { LAKEBASE_KINDS, type LakebaseKind, pgIdentifierProblem } from "../names.js";
import { AUDIT_ARGUMENT_MODES, type AuditArgumentMode } from "./audit-rows.js";
import {
  APP_IDENTITY_ENV,
  APP_IDENTITY_POLICIES,
  DATABRICKS_TOOLS_ENV,
  type DatabricksToolsSettings,
} from "./databricks-tools/settings.js";
import {
  ALLOW_ENTRY,
  APP_MANAGERS_ENV,
  type AppManagers,
  NEVER_EXPANDABLE_NAMES,
  NEVER_EXPANDABLE_PREFIXES,
  parseManagers,
  refusedAllowEntries,
  SERVER_ENV_ALLOW_ENV,
  STDIO_POLICIES,
  STDIO_SERVERS_ENV,
  type StdioPolicy,
  splitList,
} from "./stdio-servers.js";
import {
  OTLP_PROTOCOLS,
  type OtlpProtocol,
  TELEMETRY_MODES,
  type TelemetrySettings,
} from "./telemetry-settings.js";

/**
 * The runtime's configuration: what the Apps platform injects plus what our app.yaml passes
 * (docs/design.md). The one place in runtime/ that reads the environment, and it checks EVERY variable
 * it reads (docs/runtime.md lists them): one message per problem naming the variable and the accepted
 * form, all problems at once, exit 2. No zod here: this file ships inside the lean runtime bundle.
 */
export interface RuntimeEnv {
  appPort: number;
  /** Address the app port listens on (METAMCP_LISTEN_HOST; the platform needs 0.0.0.0). */
  listenHost: string;
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
  /** MetaMCP's backend port inside the app (METAMCP_BACKEND_PORT; upstream's 12009). */
  backendPort: number;
  /** MetaMCP's frontend port inside the app (METAMCP_FRONTEND_PORT; upstream's 12008). */
  frontendPort: number;
  /**
   * Own-host addresses whose identity headers still count (METAMCP_TRUSTED_PROXY_ADDRESSES: only `local`'s
   * stand-in proxy; empty on Databricks, where the Apps proxy is not on the app's host).
   */
  trustedProxyAddresses: string[];
  /** An MCP session with no request for this long is ended (METAMCP_SESSION_IDLE_MINUTES, default 30). */
  sessionIdleMs: number;
  /** The endpoint `<app url>/mcp` serves (METAMCP_DEFAULT_ENDPOINT; set for apps named `mcp-…`). */
  defaultEndpoint?: string;
  /** Who may create or change STDIO servers (METAMCP_STDIO_SERVERS, default managers; docs/stdio-servers.md). */
  stdioPolicy: StdioPolicy;
  /** METAMCP_APP_MANAGERS, sorted into users, service principals and groups (which count for nobody). */
  appManagers: AppManagers;
  /** The tool-call audit (docs/audit.md): METAMCP_AUDIT, METAMCP_AUDIT_ARGUMENTS, METAMCP_AUDIT_DAYS. */
  audit: { enabled: boolean; arguments: AuditArgumentMode; days: number };
  /**
   * Spans of the audit's rows (docs/audit.md "Telemetry"): METAMCP_TELEMETRY=otlp with a destination
   * (OTEL_EXPORTER_OTLP_*, set by the platform when the app's telemetry export is on); else undefined.
   */
  telemetry?: TelemetrySettings;
  /** Why telemetry is off although METAMCP_TELEMETRY asks for it (said at start; the app runs without it). */
  telemetryOff?: string;
  /** Databricks' managed MCP servers (docs/databricks-tools.md): METAMCP_DATABRICKS_TOOLS, _APP_IDENTITY. */
  databricksTools: DatabricksToolsSettings;
}

/**
 * Upstream's fixed ports: the backend calls `app.listen(12009, …)` and Next's build bakes
 * `http://localhost:12009` into its rewrites and middleware; the frontend listens on PORT (12008 in
 * upstream's entrypoint). Overridable for trees built for other ports (tests, runs beside another MetaMCP):
 * a real MetaMCP tree still needs 12009 for its backend (docs/runtime.md).
 */
export const DEFAULT_BACKEND_PORT = 12009;
export const DEFAULT_FRONTEND_PORT = 12008;

/** Every variable the runtime reads (docs/runtime.md has one row for each; a test keeps them in step). */
export const RUNTIME_VARIABLES = [
  "DATABRICKS_APP_PORT",
  "DATABRICKS_APP_NAME",
  "DATABRICKS_HOST",
  "DATABRICKS_CLIENT_ID",
  "DATABRICKS_CLIENT_SECRET",
  "DATABRICKS_WORKSPACE_ID",
  "METAMCP_APP_URL",
  "METAMCP_LISTEN_HOST",
  "PGHOST",
  "PGPORT",
  "PGDATABASE",
  "PGUSER",
  "PGSSLMODE",
  "PGAPPNAME",
  "LAKEBASE_KIND",
  "LAKEBASE_ENDPOINT",
  "LAKEBASE_INSTANCE_NAME",
  "METAMCP_DB_SCHEMA",
  "BETTER_AUTH_SECRET",
  "METAMCP_ROOT",
  "METAMCP_DB_WAIT_SECONDS",
  "METAMCP_BACKEND_PORT",
  "METAMCP_FRONTEND_PORT",
  "BOOTSTRAP_ENABLE",
  "EXTRA_TRUSTED_ORIGINS",
  "METAMCP_EMAIL_SIGNUP",
  "METAMCP_ENDPOINT_IDENTITY_DEFAULT",
  "METAMCP_TRUSTED_PROXY_ADDRESSES",
  "METAMCP_SESSION_IDLE_MINUTES",
  "METAMCP_DEFAULT_ENDPOINT",
  "METAMCP_STDIO_SERVERS",
  "METAMCP_APP_MANAGERS",
  "METAMCP_SERVER_ENV_ALLOW",
  "METAMCP_AUDIT",
  "METAMCP_AUDIT_ARGUMENTS",
  "METAMCP_AUDIT_DAYS",
  "METAMCP_TELEMETRY",
  "METAMCP_TELEMETRY_PRINCIPAL",
  "METAMCP_TELEMETRY_ENDPOINT",
  "METAMCP_TELEMETRY_PROTOCOL",
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_PROTOCOL",
  "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
  "OTEL_EXPORTER_OTLP_HEADERS",
  "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
  "OTEL_SERVICE_NAME",
  "OTEL_RESOURCE_ATTRIBUTES",
  "METAMCP_DATABRICKS_TOOLS",
  "METAMCP_DATABRICKS_APP_IDENTITY",
  "LOG_LEVEL",
] as const;

export const PG_SSLMODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
/** MetaMCP's backend console levels (main's apps/backend/src/utils/logger.ts `validLogLevels`; else errors-only). */
export const LOG_LEVELS = ["all", "info", "errors-only", "none"] as const;
const BOOLEANS = ["true", "false", "1", "0", "yes", "no", "on", "off", "y", "n"];
const MIN_SECRET_CHARS = 16;
const MAX_DB_WAIT_SECONDS = 3600;
/** A day: past it an abandoned session's upstream connections and processes are held for no one. */
const MAX_SESSION_IDLE_MINUTES = 1440;
/** Ten years: past it "keep forever" is what is meant, and a DELETE that never matches costs for nothing. */
const MAX_AUDIT_DAYS = 3650;

const HOW_TO_SET_SECRET =
  "the app's secret resource must point at a real random value: `make bundle-deploy` generates one when the key is absent; to replace a bad one, `databricks secrets put-secret <scope> <key>` with the output of `openssl rand -base64 32`, then redeploy";

/**
 * Values people leave where a secret belongs: template syntax that was never substituted (`{{secrets/s/k}}`,
 * `<secret>`, `$VAR`, `${VAR}`, `$(cmd)`), and the "change me" family of words. Long words are looked for in
 * the value with everything but letters and digits removed, so `Replace_Me`, `your-secret-here` and
 * `CHANGE ME!` all count. Short words only count as a whole word of a value with few distinct characters
 * (what people type): a random base64 secret holds "tbd" somewhere about once in 750 draws, and "+todo="
 * about once in 450,000 (both seen), and `openssl rand` output must never be refused.
 */
const PLACEHOLDER_WORDS =
  /(changeme|changethis|replaceme|replacethis|yoursecret|yourkey|secrethere|keyhere|valuehere|placeholder|example|notasecret|redacted|generateone|putyour)/;
const PLACEHOLDER_SHORT_WORDS = new Set(["dummy", "insert", "fixme", "todo", "tbd", "setme", "fillme"]);
const PLACEHOLDER_WHOLE = new Set([
  "secret",
  "password",
  "passwd",
  "test",
  "default",
  "none",
  "null",
  "undefined",
]);

/**
 * The app settings a deployer sets in .env and `render` writes into app.yaml (METAMCP_TRUSTED_PROXY_ADDRESSES,
 * METAMCP_SESSION_IDLE_MINUTES, METAMCP_DEFAULT_ENDPOINT, METAMCP_STDIO_SERVERS, METAMCP_SERVER_ENV_ALLOW, METAMCP_AUDIT,
 * METAMCP_AUDIT_ARGUMENTS, METAMCP_AUDIT_DAYS, METAMCP_TELEMETRY, METAMCP_TELEMETRY_PRINCIPAL, METAMCP_TELEMETRY_ENDPOINT,
 * METAMCP_TELEMETRY_PROTOCOL, METAMCP_DATABRICKS_TOOLS, METAMCP_DATABRICKS_APP_IDENTITY; and the platform's OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT and _PROTOCOL), read
 * and checked. Pure: src/config validates the same values with it before a deploy, so a value the app would
 * refuse at start is refused on the workstation, with the same words.
 */
export function readAppSettings(env: Record<string, string | undefined>): {
  problems: string[];
  trustedProxyAddresses: string[];
  idleMinutes: number;
  defaultEndpoint: string | undefined;
  stdioPolicy: StdioPolicy;
  audit: { enabled: boolean; arguments: (typeof AUDIT_ARGUMENT_MODES)[number]; days: number };
  telemetry: { enabled: boolean; principal: boolean; protocol: OtlpProtocol; url: string | undefined };
  databricksTools: DatabricksToolsSettings;
} {
  const problems: string[] = [];
  const raw = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === "" ? undefined : v;
  };
  const shown = (v: string) => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
  const check = (name: string, value: string | undefined, ok: boolean, form: string) => {
    if (value !== undefined && !ok) problems.push(`${name}=${shown(value)} is not valid: ${form}`);
  };
  const oneOf = <T extends string>(
    name: string,
    value: string | undefined,
    allowed: readonly T[],
    fallback: T,
  ) => {
    if (value === undefined) return fallback;
    check(name, value, (allowed as readonly string[]).includes(value), `one of ${allowed.join(", ")}`);
    return value as T;
  };
  const trustedRaw = raw("METAMCP_TRUSTED_PROXY_ADDRESSES");
  const trustedProxyAddresses = (trustedRaw ?? "")
    .split(",")
    .map((a) => a.trim())
    .filter((a) => a !== "");
  check(
    "METAMCP_TRUSTED_PROXY_ADDRESSES",
    trustedRaw,
    trustedProxyAddresses.length > 0 && trustedProxyAddresses.every((a) => isIP(a) !== 0),
    "comma-separated IP addresses (only `local` sets it; leave it unset on Databricks)",
  );
  const idleRaw = raw("METAMCP_SESSION_IDLE_MINUTES");
  const idleMinutes =
    idleRaw === undefined ? 30 : /^\d+(\.\d+)?$/.test(idleRaw) ? Number(idleRaw) : Number.NaN;
  check(
    "METAMCP_SESSION_IDLE_MINUTES",
    idleRaw,
    idleMinutes > 0 && idleMinutes <= MAX_SESSION_IDLE_MINUTES,
    `minutes after which an idle MCP session is ended, more than 0 and at most ${MAX_SESSION_IDLE_MINUTES} (default 30)`,
  );
  const defaultEndpoint = raw("METAMCP_DEFAULT_ENDPOINT");
  // MetaMCP's endpoint names (its create form): letters, digits, dashes and underscores.
  check(
    "METAMCP_DEFAULT_ENDPOINT",
    defaultEndpoint,
    /^[A-Za-z0-9_-]{1,100}$/.test(defaultEndpoint ?? ""),
    "a MetaMCP endpoint name (letters, digits, - and _), served at <app url>/mcp",
  );
  const stdioPolicy = oneOf(STDIO_SERVERS_ENV, raw(STDIO_SERVERS_ENV), STDIO_POLICIES, "managers");
  const allowRaw = raw(SERVER_ENV_ALLOW_ENV);
  const badForm = splitList(allowRaw).filter((e) => !ALLOW_ENTRY.test(e));
  if (badForm.length)
    problems.push(
      `${SERVER_ENV_ALLOW_ENV} has entries that are not a variable name or a NAME_* prefix: ${badForm.map(shown).join(", ")}`,
    );
  const refused = refusedAllowEntries(allowRaw);
  if (refused.length)
    problems.push(
      `${SERVER_ENV_ALLOW_ENV} names the app's own secrets, which a server's \${NAME} never reaches: ${refused.join(", ")} (never: ${[...NEVER_EXPANDABLE_NAMES, ...NEVER_EXPANDABLE_PREFIXES.map((p) => `${p}*`)].join(", ")})`,
    );

  const auditOn = oneOf("METAMCP_AUDIT", raw("METAMCP_AUDIT"), ["on", "off"], "on");
  const auditArguments = oneOf(
    "METAMCP_AUDIT_ARGUMENTS",
    raw("METAMCP_AUDIT_ARGUMENTS"),
    AUDIT_ARGUMENT_MODES,
    "off",
  );
  const daysRaw = raw("METAMCP_AUDIT_DAYS");
  const auditDays = daysRaw === undefined ? 90 : /^\d{1,5}$/.test(daysRaw) ? Number(daysRaw) : Number.NaN;
  check(
    "METAMCP_AUDIT_DAYS",
    daysRaw,
    auditDays >= 1 && auditDays <= MAX_AUDIT_DAYS,
    `whole days to keep audit rows, from 1 to ${MAX_AUDIT_DAYS} (default 90)`,
  );

  const audit = { enabled: auditOn === "on", arguments: auditArguments, days: auditDays };

  const telemetryMode = oneOf("METAMCP_TELEMETRY", raw("METAMCP_TELEMETRY"), TELEMETRY_MODES, "off");
  const principal = oneOf(
    "METAMCP_TELEMETRY_PRINCIPAL",
    raw("METAMCP_TELEMETRY_PRINCIPAL"),
    ["off", "on"],
    "off",
  );
  const endpoint = (name: string) => {
    const v = raw(name);
    let u: URL | undefined;
    try {
      u = v === undefined ? undefined : new URL(v);
    } catch {}
    check(
      name,
      v,
      u !== undefined && (u.protocol === "http:" || u.protocol === "https:") && !u.username && !u.password,
      "an http:// or https:// URL of an OTLP collector, without credentials (they go in OTEL_EXPORTER_OTLP_HEADERS, a secret)",
    );
    return v;
  };
  // The deployer's own collector (ours, from app.yaml: a workstation's OTEL_* never reach the app), with its
  // protocol; else the OpenTelemetry specification's variables (the platform's telemetry export sets them):
  // the signal's own first, then the general one, whose endpoint is a base for OTLP/HTTP.
  const ownEndpoint = endpoint("METAMCP_TELEMETRY_ENDPOINT");
  const ownProtocol = oneOf(
    "METAMCP_TELEMETRY_PROTOCOL",
    raw("METAMCP_TELEMETRY_PROTOCOL"),
    OTLP_PROTOCOLS,
    "http/protobuf",
  );
  const protocol =
    ownEndpoint !== undefined
      ? ownProtocol
      : oneOf(
          "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
          raw("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
          OTLP_PROTOCOLS,
          oneOf(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            raw("OTEL_EXPORTER_OTLP_PROTOCOL"),
            OTLP_PROTOCOLS,
            "http/protobuf",
          ),
        );
  const tracesEndpoint = endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const baseEndpoint = endpoint("OTEL_EXPORTER_OTLP_ENDPOINT");
  const url =
    ownEndpoint ??
    tracesEndpoint ??
    (baseEndpoint === undefined
      ? undefined
      : protocol === "grpc"
        ? baseEndpoint
        : `${baseEndpoint.replace(/\/+$/, "")}/v1/traces`);
  const telemetry = { enabled: telemetryMode === "otlp", principal: principal === "on", protocol, url };
  const databricksTools = {
    enabled: oneOf(DATABRICKS_TOOLS_ENV, raw(DATABRICKS_TOOLS_ENV), ["on", "off"], "on") === "on",
    appIdentity: oneOf(APP_IDENTITY_ENV, raw(APP_IDENTITY_ENV), APP_IDENTITY_POLICIES, "managers"),
  };
  return {
    problems,
    trustedProxyAddresses,
    idleMinutes,
    defaultEndpoint,
    stdioPolicy,
    audit,
    telemetry,
    databricksTools,
  };
}

/** Why `secret` is not a usable BETTER_AUTH_SECRET (never containing the value), or undefined. */
export function authSecretProblem(secret: string): string | undefined {
  if (secret === "") return "is empty (app.yaml: valueFrom the app's secret resource)";
  if (secret.trim() === "") return "is only whitespace";
  const s = secret.trim();
  if (/^\{\{.*\}\}$/s.test(s) || /^<.*>$/s.test(s) || /\$\{[^}]*\}|\$\([^)]*\)|^\$[A-Za-z_]\w*$/.test(s))
    return "is a placeholder (an unsubstituted template or variable reference), not a secret: is app.yaml's valueFrom pointing at the secret resource?";
  const letters = s.toLowerCase().replace(/[^a-z0-9]/g, "");
  if (
    PLACEHOLDER_WHOLE.has(letters) ||
    PLACEHOLDER_WORDS.test(letters) ||
    (new Set(s).size < 24 &&
      s
        .toLowerCase()
        .split(/[^a-z0-9]+/)
        .some((word) => PLACEHOLDER_SHORT_WORDS.has(word))) ||
    /^(.)\1*$/.test(letters) ||
    letters === ""
  )
    return "is a placeholder, not a secret";
  if (secret.length < MIN_SECRET_CHARS) return `is shorter than ${MIN_SECRET_CHARS} characters`;
  return undefined;
}

export function normalizeUrl(value: string): string {
  const withScheme = /^https?:\/\//i.test(value) ? value : `https://${value}`;
  return withScheme.replace(/\/+$/, "");
}

/** A URL's origin when `value` is an http(s) origin (scheme optional, no path/query), else undefined. */
function originOf(value: string): string | undefined {
  try {
    const url = new URL(normalizeUrl(value));
    if (!["http:", "https:"].includes(url.protocol) || !url.hostname) return undefined;
    if (url.pathname !== "/" || url.search || url.hash || url.username || url.password) return undefined;
    return url.origin;
  } catch {
    return undefined;
  }
}

export function readRuntimeEnv(env: Record<string, string | undefined>, runtimeDir: string): RuntimeEnv {
  const problems: string[] = [];
  /** A value as given; unset and empty are the same (the platform passes unresolved values as empty). */
  const raw = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === "" ? undefined : v;
  };
  const need = (name: string, why: string): string => {
    const v = raw(name);
    if (v === undefined) problems.push(`${name} is not set (${why})`);
    return v ?? "";
  };
  /** Printable for a message: quoted, cut when huge (a pasted file must not flood the log). */
  const shown = (v: string) => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
  const check = (name: string, value: string | undefined, ok: boolean, form: string) => {
    if (value !== undefined && !ok) problems.push(`${name}=${shown(value)} is not valid: ${form}`);
  };
  const noSpace = (name: string, value: string | undefined, form: string) =>
    check(name, value, value === undefined || /^\S+$/.test(value), form);
  const port = (name: string, value: string | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    const n = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN;
    check(name, value, n >= 1 && n <= 65535, "a TCP port, a whole number from 1 to 65535");
    return n;
  };
  const oneOf = <T extends string>(
    name: string,
    value: string | undefined,
    allowed: readonly T[],
    fallback: T,
  ) => {
    if (value === undefined) return fallback;
    check(name, value, (allowed as readonly string[]).includes(value), `one of ${allowed.join(", ")}`);
    return value as T;
  };

  const appPort = port(
    "DATABRICKS_APP_PORT",
    need("DATABRICKS_APP_PORT", "the Apps platform sets it: the only port its proxy reaches"),
    0,
  );
  const listenHost = raw("METAMCP_LISTEN_HOST") ?? "0.0.0.0";
  check(
    "METAMCP_LISTEN_HOST",
    listenHost,
    isIP(listenHost) !== 0 || listenHost === "localhost",
    "an IP address (0.0.0.0 on the platform, 127.0.0.1 for loopback only) or localhost",
  );
  const appName = need("DATABRICKS_APP_NAME", "set by the Apps platform");
  check(
    "DATABRICKS_APP_NAME",
    raw("DATABRICKS_APP_NAME"),
    /^[a-z0-9][a-z0-9-]{0,62}$/.test(appName),
    "an app name: lower-case letters, digits and dashes",
  );
  const hostRaw = need("DATABRICKS_HOST", "set by the Apps platform");
  const hostOrigin = hostRaw ? originOf(hostRaw) : undefined;
  check(
    "DATABRICKS_HOST",
    raw("DATABRICKS_HOST"),
    hostOrigin !== undefined,
    "the workspace URL, e.g. https://adb-123.4.azuredatabricks.net (no path)",
  );
  const clientId = need("DATABRICKS_CLIENT_ID", "the app's service principal, set by the Apps platform");
  noSpace(
    "DATABRICKS_CLIENT_ID",
    raw("DATABRICKS_CLIENT_ID"),
    "the service principal's client id, no spaces",
  );
  const clientSecret = need(
    "DATABRICKS_CLIENT_SECRET",
    "the app's service principal, set by the Apps platform",
  );
  if (clientSecret && !/^\S+$/.test(clientSecret))
    problems.push("DATABRICKS_CLIENT_SECRET is not valid: it contains whitespace (value not shown)");
  else registerSecret(clientSecret);
  check(
    "DATABRICKS_WORKSPACE_ID",
    raw("DATABRICKS_WORKSPACE_ID"),
    /^\d+$/.test(raw("DATABRICKS_WORKSPACE_ID") ?? ""),
    "the workspace id, digits",
  );
  const appUrlRaw = raw("METAMCP_APP_URL");
  const appUrl = appUrlRaw === undefined ? undefined : originOf(appUrlRaw);
  check(
    "METAMCP_APP_URL",
    appUrlRaw,
    appUrl !== undefined,
    "the app's public origin, e.g. https://myapp-123.aws.databricksapps.com (no path: MetaMCP needs the bare origin)",
  );

  const pgHost = need(
    "PGHOST",
    "injected by the app's Lakebase database resource: is the resource attached?",
  );
  noSpace("PGHOST", raw("PGHOST"), "a host name or IP address");
  const pgPort = port("PGPORT", raw("PGPORT"), 5432);
  const pgUser = need("PGUSER", "injected by the app's Lakebase database resource");
  const pgDatabase = need("PGDATABASE", "injected by the app's Lakebase database resource");
  check("PGDATABASE", raw("PGDATABASE"), pgDatabase.length <= 63, "a database name, at most 63 characters");
  check("PGUSER", raw("PGUSER"), pgUser.trim() === pgUser, "a role name without surrounding spaces");
  const sslmode = oneOf("PGSSLMODE", raw("PGSSLMODE"), PG_SSLMODES, "require");
  const pgAppName = raw("PGAPPNAME") ?? appName;
  check("PGAPPNAME", raw("PGAPPNAME"), pgAppName.length <= 63, "an application name, at most 63 characters");

  const schema = raw("METAMCP_DB_SCHEMA") ?? "metamcp_app";
  const schemaProblem = pgIdentifierProblem(schema);
  if (schemaProblem) problems.push(`METAMCP_DB_SCHEMA=${shown(schema)} ${schemaProblem}`);
  const kind = oneOf("LAKEBASE_KIND", raw("LAKEBASE_KIND"), LAKEBASE_KINDS, "autoscaling");
  const endpoint = raw("LAKEBASE_ENDPOINT");
  const instanceName = raw("LAKEBASE_INSTANCE_NAME");
  if (kind === "autoscaling") {
    if (!endpoint)
      problems.push("LAKEBASE_ENDPOINT is not set (app.yaml: valueFrom the app's postgres resource)");
    check(
      "LAKEBASE_ENDPOINT",
      endpoint,
      /^projects\/[^/\s]+\/branches\/[^/\s]+\/endpoints\/[^/\s]+$/.test(endpoint ?? ""),
      "an endpoint path: projects/<project>/branches/<branch>/endpoints/<endpoint>",
    );
  }
  if (kind === "provisioned") {
    if (!instanceName)
      problems.push(
        "LAKEBASE_INSTANCE_NAME is not set (app.yaml passes it from our config; never guessed from PGHOST)",
      );
    check(
      "LAKEBASE_INSTANCE_NAME",
      instanceName,
      /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/.test(instanceName ?? ""),
      "an instance name: lower-case letters, digits and dashes (2-63)",
    );
  }

  const secret = env.BETTER_AUTH_SECRET ?? "";
  const secretProblem = authSecretProblem(secret);
  // Only a secret we accept is registered for masking: a refused value is never printed anyway, and a
  // short common word registered for masking would garble every message that contains it.
  if (secretProblem)
    problems.push(`BETTER_AUTH_SECRET ${secretProblem} (value not shown): ${HOW_TO_SET_SECRET}`);
  else registerSecret(secret);

  const rootRaw = raw("METAMCP_ROOT");
  check("METAMCP_ROOT", rootRaw, rootRaw === undefined || rootRaw.trim() === rootRaw, "a directory path");
  const waitRaw = raw("METAMCP_DB_WAIT_SECONDS");
  const waitSeconds = waitRaw === undefined ? 120 : /^\d{1,7}$/.test(waitRaw) ? Number(waitRaw) : Number.NaN;
  check(
    "METAMCP_DB_WAIT_SECONDS",
    waitRaw,
    waitSeconds >= 0 && waitSeconds <= MAX_DB_WAIT_SECONDS,
    `whole seconds from 0 to ${MAX_DB_WAIT_SECONDS}`,
  );
  const backendPort = port("METAMCP_BACKEND_PORT", raw("METAMCP_BACKEND_PORT"), DEFAULT_BACKEND_PORT);
  const frontendPort = port("METAMCP_FRONTEND_PORT", raw("METAMCP_FRONTEND_PORT"), DEFAULT_FRONTEND_PORT);
  // Three servers on one machine: the same port twice is a start that cannot work (EADDRINUSE later).
  const clash = [
    ["METAMCP_BACKEND_PORT", backendPort, "METAMCP_FRONTEND_PORT", frontendPort],
    ["METAMCP_BACKEND_PORT", backendPort, "DATABRICKS_APP_PORT", appPort],
    ["METAMCP_FRONTEND_PORT", frontendPort, "DATABRICKS_APP_PORT", appPort],
  ] as const;
  for (const [a, pa, b, pb] of clash)
    if (pa === pb && pa > 0)
      problems.push(
        `${a} and ${b} are both ${pa}: MetaMCP's backend, its frontend and the app port need three different ports`,
      );
  const bootstrap = raw("BOOTSTRAP_ENABLE");
  check(
    "BOOTSTRAP_ENABLE",
    bootstrap,
    BOOLEANS.includes((bootstrap ?? "").trim().toLowerCase()),
    "true or false",
  );
  const origins = raw("EXTRA_TRUSTED_ORIGINS");
  check(
    "EXTRA_TRUSTED_ORIGINS",
    origins,
    (origins ?? "")
      .split(",")
      .map((o) => o.trim())
      .every((o) => o !== "" && !/\s/.test(o)),
    "comma-separated origins, e.g. https://a.example.com,https://b.example.com",
  );
  const signup = raw("METAMCP_EMAIL_SIGNUP");
  check(
    "METAMCP_EMAIL_SIGNUP",
    signup,
    BOOLEANS.includes((signup ?? "").trim().toLowerCase()),
    "on or off (email/password sign-up in MetaMCP; off by default, docs/identity.md)",
  );
  // Exactly on/off: the backend's module reads it as "on unless off", so "false" must not pass as on.
  oneOf("METAMCP_ENDPOINT_IDENTITY_DEFAULT", raw("METAMCP_ENDPOINT_IDENTITY_DEFAULT"), ["on", "off"], "on");
  oneOf("LOG_LEVEL", raw("LOG_LEVEL"), LOG_LEVELS, "errors-only");
  const settings = readAppSettings(env);
  problems.push(...settings.problems);
  const { trustedProxyAddresses, idleMinutes, defaultEndpoint, stdioPolicy, audit, databricksTools } =
    settings;
  // An OTLP header may carry a token (`Authorization=Bearer …`): masked wherever it could show.
  for (const name of ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"])
    for (const [, value] of keyValueList(raw(name))) registerSecret(value);
  let telemetry: TelemetrySettings | undefined;
  let telemetryOff: string | undefined;
  if (settings.telemetry.enabled && settings.telemetry.url === undefined)
    telemetryOff =
      "METAMCP_TELEMETRY=otlp, but the app has no telemetry destination: none of METAMCP_TELEMETRY_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (on Databricks the platform sets them when the app's telemetry export is on: METAMCP_TELEMETRY_TABLES, docs/audit.md)";
  else if (settings.telemetry.enabled)
    telemetry = {
      protocol: settings.telemetry.protocol,
      url: settings.telemetry.url!,
      serviceName: raw("OTEL_SERVICE_NAME") ?? raw("DATABRICKS_APP_NAME") ?? "metamcp-databricks",
      resourceAttributes: Object.fromEntries(keyValueList(raw("OTEL_RESOURCE_ATTRIBUTES"))),
      principal: settings.telemetry.principal,
    };
  const managersRaw = raw(APP_MANAGERS_ENV);
  const badEmails = splitList(managersRaw).filter((e) => e.includes("@") && !/^[^@\s]+@[^@\s]+$/.test(e));
  if (badEmails.length)
    problems.push(
      `${APP_MANAGERS_ENV} has entries that are not an email address: ${badEmails.map(shown).join(", ")} (comma-separated workspace users' emails, service principals' application ids, group names)`,
    );
  if (problems.length > 0) {
    throw new UserError("runtime_env", `cannot start: ${problems.join("; ")}`, EXIT.input);
  }
  return {
    appPort,
    listenHost,
    appName,
    host: hostOrigin!,
    clientId,
    clientSecret,
    appUrl,
    pg: {
      host: pgHost,
      port: pgPort,
      database: pgDatabase,
      user: pgUser,
      sslmode,
      appName: pgAppName,
    },
    schema,
    lakebase: { kind, endpoint, instanceName },
    betterAuthSecret: secret,
    metamcpRoot: rootRaw ? path.resolve(rootRaw) : path.resolve(runtimeDir, "../metamcp"),
    dbWaitMs: waitSeconds * 1000,
    backendPort,
    frontendPort,
    trustedProxyAddresses,
    sessionIdleMs: Math.round(idleMinutes * 60_000),
    defaultEndpoint,
    stdioPolicy,
    appManagers: parseManagers(managersRaw),
    audit,
    telemetry,
    telemetryOff,
    databricksTools,
  };
}

/**
 * `key=value,key=value` (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS: the specification's W3C
 * Baggage-like form, values percent-encoded). A malformed pair is left out.
 */
function keyValueList(value: string | undefined): [string, string][] {
  const out: [string, string][] = [];
  for (const pair of (value ?? "").split(",")) {
    const i = pair.indexOf("=");
    if (i <= 0) continue;
    try {
      out.push([pair.slice(0, i).trim(), decodeURIComponent(pair.slice(i + 1).trim())]);
    } catch {}
  }
  return out;
}
