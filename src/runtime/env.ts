import { isIP } from "node:net";
import path from "node:path";
import * as z from "zod/mini";
import { EXIT, UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";
import { LAKEBASE_KINDS, type LakebaseKind, pgIdentifierProblem } from "../names.js";
import { placeholderKind } from "../placeholders.js";
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
 * form, all problems at once, exit 2. One zod schema per variable (`zod/mini`: this file ships inside the
 * lean runtime bundle: 28 KB of it, where the full zod would be about five times that).
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
 * How the variables are checked. Each variable has one schema; an issue's message is what follows the
 * variable's name in the sentence the user reads (`is not set (…)`, `is not valid: <accepted form>`, `must …`).
 * The value is quoted after the name (`PGPORT="abc" is not valid: …`), except for the variables below.
 */
type Variables = Record<string, z.ZodMiniType>;
type Values<S extends Variables> = { [K in keyof S]: z.output<S[K]> };

/** Secrets never show their value; lists name their bad entries in the message instead. */
const NAMED_WITHOUT_VALUE = new Set([
  "DATABRICKS_CLIENT_SECRET",
  "BETTER_AUTH_SECRET",
  APP_MANAGERS_ENV,
  SERVER_ENV_ALLOW_ENV,
]);

/** Printable for a message: quoted, cut when huge (a pasted file must not flood the log). */
const shown = (v: string) => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);

/** A value as given; unset and empty are the same (the platform passes unresolved values as empty). */
function given(env: Record<string, string | undefined>, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/**
 * Every variable of `variables` parsed from `env`, each problem a sentence in `problems`. A variable with a
 * problem is missing from the result, so checks across variables see only good values.
 */
function readVariables<S extends Variables>(
  variables: S,
  env: Record<string, string | undefined>,
  problems: string[],
): Partial<Values<S>> {
  const values: Partial<Values<S>> = {};
  for (const name of Object.keys(variables) as (keyof S & string)[]) {
    const value = given(env, name);
    const parsed = variables[name]!.safeParse(value);
    if (parsed.success) values[name] = parsed.data as Values<S>[typeof name];
    else
      for (const issue of parsed.error.issues)
        problems.push(
          value === undefined || NAMED_WITHOUT_VALUE.has(name)
            ? `${name} ${issue.message}`
            : `${name}=${shown(value)} ${issue.message}`,
        );
  }
  return values;
}

/**
 * The values as the types say they are: true once `problems` stayed empty (every variable parsed); with
 * problems, a bad variable is undefined, and the caller refuses to start before using any value.
 */
function complete<S extends Variables>(values: Partial<Values<S>>): Values<S> {
  return values as Values<S>;
}

/** A variable that must be set: `why` says who sets it. */
const required = (why: string) => z.string({ error: `is not set (${why})` });
const optional = z.optional(z.string());
/** The accepted form, in the words the message uses. */
const form = (ok: (v: string) => boolean, accepted: string) =>
  z.refine<string>(ok, `is not valid: ${accepted}`);
/** A value of the accepted form. */
const valid = (ok: (v: string) => boolean, accepted: string) => z.string().check(form(ok, accepted));
/** A value with as many problems as `find` says, each its own sentence (lists name their bad entries). */
const sentences = (find: (v: string) => (string | undefined | false)[]) =>
  z.string().check(
    z.superRefine((v, ctx) => {
      for (const message of find(v)) if (message) ctx.issues.push({ code: "custom", input: v, message });
    }),
  );
const choice = <const T extends readonly [string, ...string[]]>(allowed: T) =>
  z.enum(allowed, { error: `is not valid: one of ${allowed.join(", ")}` });
const oneOf = <const T extends readonly [string, ...string[]]>(allowed: T, fallback: T[number]) =>
  z._default(choice(allowed), fallback);
const onOff = (fallback: "on" | "off") => oneOf(["on", "off"], fallback);
/** A number of the accepted form, `fallback` when unset. */
const number = (ok: (v: string) => boolean, accepted: string, fallback: number) =>
  z._default(z.pipe(valid(ok, accepted), z.transform(Number)), fallback);
const PORT_FORM = "a TCP port, a whole number from 1 to 65535";
const isPort = (v: string) => /^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535;
const port = (fallback: number) => number(isPort, PORT_FORM, fallback);
/** A whole number from `min` to `max`, at most `digits` long. */
const isWhole = (min: number, max: number, digits: number) => (v: string) =>
  new RegExp(`^\\d{1,${digits}}$`).test(v) && +v >= min && +v <= max;
const isBoolean = (v: string) => BOOLEANS.includes(v.trim().toLowerCase());
const noSpace = (v: string) => /^\S+$/.test(v);
const isOtlpUrl = (v: string) => {
  try {
    const u = new URL(v);
    return (u.protocol === "http:" || u.protocol === "https:") && !u.username && !u.password;
  } catch {
    return false;
  }
};
const otlpEndpoint = z.optional(
  valid(
    isOtlpUrl,
    "an http:// or https:// URL of an OTLP collector, without credentials (they go in OTEL_EXPORTER_OTLP_HEADERS, a secret)",
  ),
);
/** An http(s) origin (scheme optional, no path/query), read as the origin. */
const origin = (accepted: string) =>
  z.pipe(
    valid((v) => originOf(v) !== undefined, accepted),
    z.transform((v) => originOf(v)!),
  );

/**
 * The app settings a deployer sets in .env and `render` writes into app.yaml, and the platform's OTLP
 * endpoints. Shared with src/config (readAppSettings), so the workstation refuses what the app would.
 */
const APP_SETTINGS = {
  METAMCP_TRUSTED_PROXY_ADDRESSES: z._default(
    z.pipe(
      valid(
        (v) => splitList(v).length > 0 && splitList(v).every((a) => isIP(a) !== 0),
        "comma-separated IP addresses (only `local` sets it; leave it unset on Databricks)",
      ),
      z.transform((v: string) => splitList(v)),
    ),
    [],
  ),
  METAMCP_SESSION_IDLE_MINUTES: number(
    (v) => /^\d+(\.\d+)?$/.test(v) && +v > 0 && +v <= MAX_SESSION_IDLE_MINUTES,
    `minutes after which an idle MCP session is ended, more than 0 and at most ${MAX_SESSION_IDLE_MINUTES} (default 30)`,
    30,
  ),
  // MetaMCP's endpoint names (its create form): letters, digits, dashes and underscores.
  METAMCP_DEFAULT_ENDPOINT: z.optional(
    valid(
      (v) => /^[A-Za-z0-9_-]{1,100}$/.test(v),
      "a MetaMCP endpoint name (letters, digits, - and _), served at <app url>/mcp",
    ),
  ),
  [STDIO_SERVERS_ENV]: oneOf(STDIO_POLICIES, "managers"),
  [SERVER_ENV_ALLOW_ENV]: z.optional(
    sentences((v) => {
      const badForm = splitList(v).filter((e) => !ALLOW_ENTRY.test(e));
      const refused = refusedAllowEntries(v);
      const never = [...NEVER_EXPANDABLE_NAMES, ...NEVER_EXPANDABLE_PREFIXES.map((p) => `${p}*`)];
      return [
        badForm.length > 0 &&
          `has entries that are not a variable name or a NAME_* prefix: ${badForm.map(shown).join(", ")}`,
        refused.length > 0 &&
          `names the app's own secrets, which a server's \${NAME} never reaches: ${refused.join(", ")} (never: ${never.join(", ")})`,
      ];
    }),
  ),
  METAMCP_AUDIT: onOff("on"),
  METAMCP_AUDIT_ARGUMENTS: oneOf(AUDIT_ARGUMENT_MODES, "off"),
  METAMCP_AUDIT_DAYS: number(
    isWhole(1, MAX_AUDIT_DAYS, 5),
    `whole days to keep audit rows, from 1 to ${MAX_AUDIT_DAYS} (default 90)`,
    90,
  ),
  METAMCP_TELEMETRY: oneOf(TELEMETRY_MODES, "off"),
  METAMCP_TELEMETRY_PRINCIPAL: oneOf(["off", "on"], "off"),
  // The deployer's own collector (ours, from app.yaml: a workstation's OTEL_* never reach the app), with its
  // protocol; else the OpenTelemetry specification's variables (the platform's telemetry export sets them).
  METAMCP_TELEMETRY_ENDPOINT: otlpEndpoint,
  METAMCP_TELEMETRY_PROTOCOL: oneOf(OTLP_PROTOCOLS, "http/protobuf"),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: otlpEndpoint,
  OTEL_EXPORTER_OTLP_ENDPOINT: otlpEndpoint,
  [DATABRICKS_TOOLS_ENV]: onOff("on"),
  [APP_IDENTITY_ENV]: oneOf(APP_IDENTITY_POLICIES, "managers"),
};

/** The platform's protocols: read only without METAMCP_TELEMETRY_ENDPOINT (its own protocol applies then). */
const PLATFORM_OTLP_PROTOCOLS = {
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: z.optional(choice(OTLP_PROTOCOLS)),
  OTEL_EXPORTER_OTLP_PROTOCOL: z.optional(choice(OTLP_PROTOCOLS)),
};

/**
 * The app settings (APP_SETTINGS above), read and checked. Pure: src/config validates the same values with
 * it before a deploy, so a value the app would refuse at start is refused on the workstation, with the same
 * words. The values mean something only when `problems` is empty.
 */
export function readAppSettings(env: Record<string, string | undefined>): {
  problems: string[];
  trustedProxyAddresses: string[];
  idleMinutes: number;
  defaultEndpoint: string | undefined;
  stdioPolicy: StdioPolicy;
  audit: { enabled: boolean; arguments: AuditArgumentMode; days: number };
  telemetry: { enabled: boolean; principal: boolean; protocol: OtlpProtocol; url: string | undefined };
  databricksTools: DatabricksToolsSettings;
} {
  const problems: string[] = [];
  const s = complete(readVariables(APP_SETTINGS, env, problems));
  const ownEndpoint = s.METAMCP_TELEMETRY_ENDPOINT;
  const platform =
    given(env, "METAMCP_TELEMETRY_ENDPOINT") === undefined
      ? complete(readVariables(PLATFORM_OTLP_PROTOCOLS, env, problems))
      : undefined;
  // The signal's own variable first, then the general one, whose endpoint is a base for OTLP/HTTP.
  const protocol =
    platform === undefined
      ? s.METAMCP_TELEMETRY_PROTOCOL
      : (platform.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ??
        platform.OTEL_EXPORTER_OTLP_PROTOCOL ??
        "http/protobuf");
  const baseEndpoint = s.OTEL_EXPORTER_OTLP_ENDPOINT;
  const url =
    ownEndpoint ??
    s.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ??
    (baseEndpoint === undefined
      ? undefined
      : protocol === "grpc"
        ? baseEndpoint
        : `${baseEndpoint.replace(/\/+$/, "")}/v1/traces`);
  return {
    problems,
    trustedProxyAddresses: s.METAMCP_TRUSTED_PROXY_ADDRESSES,
    idleMinutes: s.METAMCP_SESSION_IDLE_MINUTES,
    defaultEndpoint: s.METAMCP_DEFAULT_ENDPOINT,
    stdioPolicy: s[STDIO_SERVERS_ENV],
    audit: {
      enabled: s.METAMCP_AUDIT === "on",
      arguments: s.METAMCP_AUDIT_ARGUMENTS,
      days: s.METAMCP_AUDIT_DAYS,
    },
    telemetry: {
      enabled: s.METAMCP_TELEMETRY === "otlp",
      principal: s.METAMCP_TELEMETRY_PRINCIPAL === "on",
      protocol,
      url,
    },
    databricksTools: {
      enabled: s[DATABRICKS_TOOLS_ENV] === "on",
      appIdentity: s[APP_IDENTITY_ENV],
    },
  };
}

/** Why `secret` is not a usable BETTER_AUTH_SECRET (never containing the value), or undefined. */
export function authSecretProblem(secret: string): string | undefined {
  if (secret === "") return "is empty (app.yaml: valueFrom the app's secret resource)";
  if (secret.trim() === "") return "is only whitespace";
  const placeholder = placeholderKind(secret, "secret");
  if (placeholder === "reference")
    return "is a placeholder (an unsubstituted template or variable reference), not a secret: is app.yaml's valueFrom pointing at the secret resource?";
  if (placeholder === "stand-in") return "is a placeholder, not a secret";
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

/** What the platform injects, what app.yaml passes besides the app settings, and MetaMCP's own. */
const RUNTIME = {
  DATABRICKS_APP_PORT: z.pipe(
    required("the Apps platform sets it: the only port its proxy reaches").check(form(isPort, PORT_FORM)),
    z.transform(Number),
  ),
  METAMCP_LISTEN_HOST: z._default(
    valid(
      (v) => isIP(v) !== 0 || v === "localhost",
      "an IP address (0.0.0.0 on the platform, 127.0.0.1 for loopback only) or localhost",
    ),
    "0.0.0.0",
  ),
  DATABRICKS_APP_NAME: required("set by the Apps platform").check(
    form((v) => /^[a-z0-9][a-z0-9-]{0,62}$/.test(v), "an app name: lower-case letters, digits and dashes"),
  ),
  DATABRICKS_HOST: z.pipe(
    required("set by the Apps platform"),
    origin("the workspace URL, e.g. https://adb-123.4.azuredatabricks.net (no path)"),
  ),
  DATABRICKS_CLIENT_ID: required("the app's service principal, set by the Apps platform").check(
    form(noSpace, "the service principal's client id, no spaces"),
  ),
  DATABRICKS_CLIENT_SECRET: required("the app's service principal, set by the Apps platform").check(
    form(noSpace, "it contains whitespace (value not shown)"),
  ),
  DATABRICKS_WORKSPACE_ID: z.optional(valid((v) => /^\d+$/.test(v), "the workspace id, digits")),
  METAMCP_APP_URL: z.optional(
    origin(
      "the app's public origin, e.g. https://myapp-123.aws.databricksapps.com (no path: MetaMCP needs the bare origin)",
    ),
  ),
  PGHOST: required("injected by the app's Lakebase database resource: is the resource attached?").check(
    form(noSpace, "a host name or IP address"),
  ),
  PGPORT: port(5432),
  PGUSER: required("injected by the app's Lakebase database resource").check(
    form((v) => v.trim() === v, "a role name without surrounding spaces"),
  ),
  PGDATABASE: required("injected by the app's Lakebase database resource").check(
    form((v) => v.length <= 63, "a database name, at most 63 characters"),
  ),
  PGSSLMODE: oneOf(PG_SSLMODES, "require"),
  PGAPPNAME: z.optional(valid((v) => v.length <= 63, "an application name, at most 63 characters")),
  METAMCP_DB_SCHEMA: z._default(
    sentences((v) => [pgIdentifierProblem(v)]),
    "metamcp_app",
  ),
  LAKEBASE_KIND: oneOf(LAKEBASE_KINDS, "autoscaling"),
  // Read as empty when unset: the check says how it was empty.
  BETTER_AUTH_SECRET: z.pipe(
    z._default(z.string(), ""),
    sentences((v) => {
      const problem = authSecretProblem(v);
      return [problem && `${problem} (value not shown): ${HOW_TO_SET_SECRET}`];
    }),
  ),
  METAMCP_ROOT: z.optional(valid((v) => v.trim() === v, "a directory path")),
  METAMCP_DB_WAIT_SECONDS: number(
    isWhole(0, MAX_DB_WAIT_SECONDS, 7),
    `whole seconds from 0 to ${MAX_DB_WAIT_SECONDS}`,
    120,
  ),
  METAMCP_BACKEND_PORT: port(DEFAULT_BACKEND_PORT),
  METAMCP_FRONTEND_PORT: port(DEFAULT_FRONTEND_PORT),
  BOOTSTRAP_ENABLE: z.optional(valid(isBoolean, "true or false")),
  EXTRA_TRUSTED_ORIGINS: z.optional(
    valid(
      (v) =>
        v
          .split(",")
          .map((o) => o.trim())
          .every((o) => o !== "" && !/\s/.test(o)),
      "comma-separated origins, e.g. https://a.example.com,https://b.example.com",
    ),
  ),
  METAMCP_EMAIL_SIGNUP: z.optional(
    valid(isBoolean, "on or off (email/password sign-up in MetaMCP; off by default, docs/identity.md)"),
  ),
  // Exactly on/off: the backend's module reads it as "on unless off", so "false" must not pass as on.
  METAMCP_ENDPOINT_IDENTITY_DEFAULT: onOff("on"),
  LOG_LEVEL: oneOf(LOG_LEVELS, "errors-only"),
  [APP_MANAGERS_ENV]: z.pipe(
    z.optional(
      sentences((v) => {
        const bad = splitList(v).filter((e) => e.includes("@") && !/^[^@\s]+@[^@\s]+$/.test(e));
        return [
          bad.length > 0 &&
            `has entries that are not an email address: ${bad.map(shown).join(", ")} (comma-separated workspace users' emails, service principals' application ids, group names)`,
        ];
      }),
    ),
    z.transform(parseManagers),
  ),
  OTEL_SERVICE_NAME: optional,
  OTEL_RESOURCE_ATTRIBUTES: optional,
  OTEL_EXPORTER_OTLP_HEADERS: optional,
  OTEL_EXPORTER_OTLP_TRACES_HEADERS: optional,
};

/** The database's location, by kind: only the chosen kind's variable is read. */
const LAKEBASE = {
  autoscaling: {
    LAKEBASE_ENDPOINT: required("app.yaml: valueFrom the app's postgres resource").check(
      form(
        (v) => /^projects\/[^/\s]+\/branches\/[^/\s]+\/endpoints\/[^/\s]+$/.test(v),
        "an endpoint path: projects/<project>/branches/<branch>/endpoints/<endpoint>",
      ),
    ),
  },
  provisioned: {
    LAKEBASE_INSTANCE_NAME: required("app.yaml passes it from our config; never guessed from PGHOST").check(
      form(
        (v) => /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/.test(v),
        "an instance name: lower-case letters, digits and dashes (2-63)",
      ),
    ),
  },
} satisfies Record<LakebaseKind, Variables>;

/** Every variable the runtime reads (docs/runtime.md has one row for each; a test keeps them in step). */
export const RUNTIME_VARIABLES: readonly string[] = [
  ...Object.keys(RUNTIME),
  ...Object.keys(LAKEBASE.autoscaling),
  ...Object.keys(LAKEBASE.provisioned),
  ...Object.keys(APP_SETTINGS),
  ...Object.keys(PLATFORM_OTLP_PROTOCOLS),
];

export function readRuntimeEnv(env: Record<string, string | undefined>, runtimeDir: string): RuntimeEnv {
  const problems: string[] = [];
  const read = readVariables(RUNTIME, env, problems);
  if (read.LAKEBASE_KIND !== undefined) readVariables(LAKEBASE[read.LAKEBASE_KIND], env, problems);
  // Three servers on one machine: the same port twice is a start that cannot work (EADDRINUSE later).
  const clash = [
    ["METAMCP_BACKEND_PORT", read.METAMCP_BACKEND_PORT, "METAMCP_FRONTEND_PORT", read.METAMCP_FRONTEND_PORT],
    ["METAMCP_BACKEND_PORT", read.METAMCP_BACKEND_PORT, "DATABRICKS_APP_PORT", read.DATABRICKS_APP_PORT],
    ["METAMCP_FRONTEND_PORT", read.METAMCP_FRONTEND_PORT, "DATABRICKS_APP_PORT", read.DATABRICKS_APP_PORT],
  ] as const;
  for (const [a, pa, b, pb] of clash)
    if (pa !== undefined && pa === pb)
      problems.push(
        `${a} and ${b} are both ${pa}: MetaMCP's backend, its frontend and the app port need three different ports`,
      );
  const settings = readAppSettings(env);
  problems.push(...settings.problems);
  // Only secrets we accept are registered for masking: a refused value is never printed anyway, and a
  // short common word registered for masking would garble every message that contains it.
  if (read.DATABRICKS_CLIENT_SECRET !== undefined) registerSecret(read.DATABRICKS_CLIENT_SECRET);
  if (read.BETTER_AUTH_SECRET !== undefined) registerSecret(read.BETTER_AUTH_SECRET);
  // An OTLP header may carry a token (`Authorization=Bearer …`): masked wherever it could show.
  for (const name of ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] as const)
    for (const [, value] of keyValueList(read[name])) registerSecret(value);
  if (problems.length > 0) {
    throw new UserError("runtime_env", `cannot start: ${problems.join("; ")}`, EXIT.input);
  }
  const v = complete(read);
  let telemetry: TelemetrySettings | undefined;
  let telemetryOff: string | undefined;
  if (settings.telemetry.enabled && settings.telemetry.url === undefined)
    telemetryOff =
      "METAMCP_TELEMETRY=otlp, but the app has no telemetry destination: none of METAMCP_TELEMETRY_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (on Databricks the platform sets them when the app's telemetry export is on: METAMCP_TELEMETRY_TABLES, docs/audit.md)";
  else if (settings.telemetry.enabled)
    telemetry = {
      protocol: settings.telemetry.protocol,
      url: settings.telemetry.url!,
      serviceName: v.OTEL_SERVICE_NAME ?? v.DATABRICKS_APP_NAME,
      resourceAttributes: Object.fromEntries(keyValueList(v.OTEL_RESOURCE_ATTRIBUTES)),
      principal: settings.telemetry.principal,
    };
  return {
    appPort: v.DATABRICKS_APP_PORT,
    listenHost: v.METAMCP_LISTEN_HOST,
    appName: v.DATABRICKS_APP_NAME,
    host: v.DATABRICKS_HOST,
    clientId: v.DATABRICKS_CLIENT_ID,
    clientSecret: v.DATABRICKS_CLIENT_SECRET,
    appUrl: v.METAMCP_APP_URL,
    pg: {
      host: v.PGHOST,
      port: v.PGPORT,
      database: v.PGDATABASE,
      user: v.PGUSER,
      sslmode: v.PGSSLMODE,
      appName: v.PGAPPNAME ?? v.DATABRICKS_APP_NAME,
    },
    schema: v.METAMCP_DB_SCHEMA,
    lakebase: {
      kind: v.LAKEBASE_KIND,
      endpoint: given(env, "LAKEBASE_ENDPOINT"),
      instanceName: given(env, "LAKEBASE_INSTANCE_NAME"),
    },
    betterAuthSecret: v.BETTER_AUTH_SECRET,
    metamcpRoot: v.METAMCP_ROOT ? path.resolve(v.METAMCP_ROOT) : path.resolve(runtimeDir, "../metamcp"),
    dbWaitMs: v.METAMCP_DB_WAIT_SECONDS * 1000,
    backendPort: v.METAMCP_BACKEND_PORT,
    frontendPort: v.METAMCP_FRONTEND_PORT,
    trustedProxyAddresses: settings.trustedProxyAddresses,
    sessionIdleMs: Math.round(settings.idleMinutes * 60_000),
    defaultEndpoint: settings.defaultEndpoint,
    stdioPolicy: settings.stdioPolicy,
    appManagers: v[APP_MANAGERS_ENV],
    audit: settings.audit,
    telemetry,
    telemetryOff,
    databricksTools: settings.databricksTools,
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
