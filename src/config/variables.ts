import path from "node:path";
import { z } from "zod";
import {
  LAKEBASE_KINDS,
  PG_IDENTIFIER_FORM,
  PG_IDENTIFIER_PATTERN,
  PG_IDENTIFIER_RESERVED,
  pgIdentifierProblem,
} from "../names.js";
import { readAppSettings } from "../runtime/env.js";
import { DEV_USER_PATTERN, devAppName } from "./dev-names.js";

/**
 * The one list of configuration variables. The loader, `.env.template`, `config --json` and the
 * rendered Databricks files all come from this table: add a variable here, nowhere else.
 */
export const TARGETS = ["dev", "prod"] as const;
export type Target = (typeof TARGETS)[number];

// Shared with the in-app runtime through a dependency-free module (src/names.ts).
export { LAKEBASE_KINDS, type LakebaseKind } from "../names.js";

/** PostgreSQL identifier we are willing to quote-free: lower case, starts with a letter, <= 63 bytes. */
export const pgIdentifier = z
  .string()
  .regex(PG_IDENTIFIER_PATTERN, PG_IDENTIFIER_FORM)
  .refine((s) => pgIdentifierProblem(s) === undefined, PG_IDENTIFIER_RESERVED);

/** Databricks App names: lower-case letters, digits and dashes, 2-30 characters. */
export const appName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,28}[a-z0-9]$/, "must be 2-30 lower-case letters, digits or dashes");

const resourceName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/, "must be lower-case letters, digits or dashes (2-63)");

/**
 * A Lakebase resource id (the last segment of `projects/P/branches/B/databases/<id>`): the pattern the
 * Postgres API enforces with a 400 (`Field database_id must match pattern ...`).
 */
export const LAKEBASE_ID_PATTERN = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
const lakebaseId = z
  .string()
  .regex(
    LAKEBASE_ID_PATTERN,
    "must be a Lakebase resource id: a lower-case letter, then lower-case letters, digits or dashes (at most 63), not ending in a dash",
  );

/**
 * A comma list of workspace principals (APP_CAN_USE, APP_CAN_MANAGE). Group names may hold spaces; an entry
 * may not be empty.
 */
const principalList = z
  .string()
  .refine(
    (v) => v.trim() === "" || v.split(",").every((e) => e.trim() !== ""),
    "a comma list of groups, users (email) or service principals (application id), no empty entries",
  );

/** METAMCP_TELEMETRY_TABLES: empty, or Unity Catalog names `catalog.schema` with an optional table prefix. */
const TELEMETRY_TABLES_FORM = /^(|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2})$/;

/**
 * A setting the app's runtime reads (src/runtime/env.ts): checked by the runtime's own reader, so a value the
 * app would refuse at start is refused here, before a deploy, in the same words. Empty = the runtime's default.
 */
/** An app instance count: the platform's horizontal scaling allows 1 to 5 (docs: databricks-apps/horizontal-scaling). */
const instanceCount = z
  .string()
  .trim()
  .refine(
    (s) => s === "" || (/^[0-9]+$/.test(s) && Number(s) >= 1 && Number(s) <= 5),
    "must be a whole number from 1 to 5 (Databricks Apps run 1 to 5 instances)",
  );

function appSetting(name: string): z.ZodType<string> {
  return z.string().superRefine((value, ctx) => {
    for (const problem of readAppSettings({ [name]: value }).problems)
      ctx.addIssue({
        code: "custom",
        // The loader names the variable and its value already.
        message: problem.replace(/^[A-Z_]+=".*?" is not valid: /, "is not valid: "),
      });
  });
}

export interface VariableDef {
  /** Environment / .env name. */
  env: string;
  /** Long CLI flag that overrides it, when a command offers one (e.g. `ref` for `--ref`). */
  flag?: string;
  /** One line for `.env.template` and `config`. */
  description: string;
  schema: z.ZodType<string>;
  /** Default, possibly derived from the target and other (already resolved) values. */
  default?: string | ((ctx: DeriveContext) => string | undefined);
}

export interface DeriveContext {
  target: Target;
  get(env: string): string | undefined;
}

const str = z.string().min(1);

/** A blank path resolves to the project itself, or makes a folder named " ": never what was meant. */
const BLANK_PATH = "must be a path, not blank";
const pathValue = z.string().refine((v) => v.trim() !== "", BLANK_PATH);
/** The same, where empty means "the default". */
const optionalPathValue = z.string().refine((v) => v === "" || v.trim() !== "", BLANK_PATH);

/**
 * Order matters: a derived default may only read variables listed before it.
 *
 * No variable holds a secret, on purpose: BETTER_AUTH_SECRET is generated into a Databricks secret scope
 * (the app reads it through `valueFrom`), Databricks credentials stay in the CLI's profile, and a token in
 * METAMCP_REPO_URL is split off and registered with the masking logger the moment it is read (the table keeps
 * the URL without it). Whatever secret the process learns is masked in every output and refused in app.yaml
 * through that one registry (src/log/secrets.ts), not through a flag here.
 */
export const VARIABLES: readonly VariableDef[] = [
  {
    env: "TARGET",
    flag: "target",
    description: "Bundle target: dev (default) or prod. Every derived name depends on it.",
    schema: z.enum(TARGETS),
    default: "dev",
  },
  {
    env: "METAMCP_REPO_URL",
    flag: "repo",
    description: "Git URL (or local path) of MetaMCP or a fork.",
    schema: str,
    default: "https://github.com/metatool-ai/metamcp.git",
  },
  {
    env: "METAMCP_REF",
    flag: "ref",
    description:
      "Tag, branch or commit SHA to build. Empty = the newest stable release on the default branch.",
    schema: z.string(),
    default: "",
  },
  {
    env: "BUILD_DIR",
    flag: "build-dir",
    description: "Where `prepare` puts the patched MetaMCP tree.",
    schema: pathValue,
    default: "build/metamcp",
  },
  {
    env: "METAMCP_CACHE_DIR",
    flag: "cache-dir",
    description:
      "Where `prepare` keeps its clone cache (a bare mirror per repository URL). Empty = the user cache dir.",
    schema: optionalPathValue,
    default: "",
  },
  {
    env: "APP_DIR",
    flag: "app-dir",
    description:
      "Where `build` assembles the deployable app tree (the app's source_code_path), <BUILD_DIR>/../app unless set.",
    schema: pathValue,
    default: ({ get }) => path.join(path.dirname(get("BUILD_DIR") ?? "build/metamcp"), "app"),
  },
  {
    env: "METAMCP_DB_SCHEMA",
    flag: "schema",
    description: "PostgreSQL schema that holds every MetaMCP table, enum and the migrations journal.",
    schema: pgIdentifier,
    default: "metamcp_app",
  },
  {
    env: "DATABRICKS_CONFIG_PROFILE",
    flag: "profile",
    description: "Databricks CLI profile (~/.databrickscfg) used for every Databricks call.",
    schema: str,
    default: "DEFAULT",
  },
  {
    env: "DATABRICKS_CLI",
    description: "Path or name of the Databricks CLI binary (>= 1.4.0).",
    schema: str,
    default: "databricks",
  },
  {
    env: "APP_BASE_NAME",
    description: "Base name every Databricks resource name derives from.",
    schema: appName,
    default: "metamcp",
  },
  {
    env: "DEV_USER",
    flag: "dev-user",
    description:
      "dev: the segment that makes every dev name yours (<base>-dev-<you>). Default: your workspace user, looked up by each Databricks command (the CLI's domain_friendly_name).",
    schema: z
      .string()
      .max(63)
      .refine(
        (v) => v === "" || DEV_USER_PATTERN.test(v),
        "lower-case letters and digits, single dashes between",
      ),
    default: "",
  },
  {
    env: "APP_NAME",
    flag: "app-name",
    description:
      "Databricks App name. Default: <base>-dev-<DEV_USER> for dev (at most 30 characters), <base> for prod.",
    schema: appName,
    default: ({ target, get }) => {
      const base = get("APP_BASE_NAME") ?? "metamcp";
      if (target === "prod") return base;
      const user = get("DEV_USER");
      return user ? devAppName(base, user) : `${base}-${target}`;
    },
  },
  {
    env: "LAKEBASE_KIND",
    description:
      "Lakebase kind: autoscaling (default; a postgres project) or provisioned (legacy: attach an existing instance only).",
    schema: z.enum(LAKEBASE_KINDS),
    default: "autoscaling",
  },
  {
    env: "LAKEBASE_CREATE",
    description:
      "true: the bundle creates the Lakebase project (autoscaling only); false: attach an existing project or instance. Default: true for autoscaling, false for provisioned.",
    schema: z.enum(["true", "false"]),
    // New provisioned instances cannot be created since 2026-03-12: provisioned always attaches.
    default: ({ get }) => (get("LAKEBASE_KIND") === "provisioned" ? "false" : "true"),
  },
  {
    env: "LAKEBASE_PROJECT",
    description: "Autoscaling: Lakebase project id.",
    schema: resourceName,
    default: ({ get }) => `${get("APP_NAME")}-db`,
  },
  {
    env: "LAKEBASE_BRANCH",
    description: "Autoscaling: branch of the project the app uses.",
    schema: resourceName,
    default: "production",
  },
  {
    env: "LAKEBASE_INSTANCE_NAME",
    description: "Provisioned (legacy): Lakebase database instance name.",
    schema: resourceName,
    default: ({ get }) => `${get("APP_NAME")}-db`,
  },
  {
    env: "LAKEBASE_DATABASE",
    description:
      "PostgreSQL database name inside the Lakebase project/instance. Default: metamcp when the bundle creates the project (its own database), else databricks_postgres.",
    schema: pgIdentifier,
    default: ({ get }) =>
      get("LAKEBASE_KIND") === "autoscaling" && get("LAKEBASE_CREATE") === "true"
        ? "metamcp"
        : "databricks_postgres",
  },
  {
    env: "LAKEBASE_DATABASE_ID",
    description:
      "Autoscaling: the database's resource id (projects/P/branches/B/databases/<id>), not its PostgreSQL name. Default: the name with _ as -.",
    schema: lakebaseId,
    default: ({ get }) => get("LAKEBASE_DATABASE")?.replaceAll("_", "-"),
  },
  {
    env: "SECRET_SCOPE",
    description: "Databricks secret scope holding BETTER_AUTH_SECRET.",
    schema: z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, "letters, digits, _ . - (at most 128)"),
    default: ({ get }) => `${get("APP_NAME")}-secrets`,
  },
  {
    env: "SECRET_KEY",
    description: "Key of BETTER_AUTH_SECRET inside the secret scope.",
    schema: z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, "letters, digits, _ . - (at most 128)"),
    default: "better-auth-secret",
  },
  {
    env: "METAMCP_EMAIL_SIGNUP",
    description:
      "MetaMCP's email/password sign-up: off (default; people sign in with their workspace identity, docs/identity.md) or on.",
    schema: z.enum(["off", "on"]),
    default: "off",
  },
  {
    env: "APP_CAN_USE",
    description:
      "Who may open the app, besides its managers: a comma list of workspace groups, users (an email) and service principals (an application id).",
    schema: principalList,
    default: "",
  },
  {
    env: "APP_CAN_MANAGE",
    description:
      "Who manages the app (and may run STDIO MCP servers in it): a comma list of groups, users (email) and service principals (application id).",
    schema: principalList,
    default: "",
  },
  {
    env: "APP_COMPUTE_SIZE",
    description: "The app's compute size: MEDIUM (the platform's default), LARGE or XLARGE.",
    schema: z.enum(["MEDIUM", "LARGE", "XLARGE"]),
    default: "MEDIUM",
  },
  {
    env: "APP_MIN_INSTANCES",
    description:
      "Horizontal scaling (a Databricks Apps Beta): the fewest instances of the app, 1 to 5, set together with APP_MAX_INSTANCES (empty: one instance, the platform's default; docs/scaling.md).",
    schema: instanceCount,
    default: "",
  },
  {
    env: "APP_MAX_INSTANCES",
    description:
      "Horizontal scaling (a Databricks Apps Beta): the most instances of the app, 1 to 5, at least APP_MIN_INSTANCES (empty: one instance; docs/scaling.md).",
    schema: instanceCount,
    default: "",
  },
  {
    env: "METAMCP_DEFAULT_ENDPOINT",
    description:
      "The MetaMCP endpoint the app serves at /mcp (required when APP_NAME starts with mcp-: AI Playground calls <app url>/mcp).",
    schema: appSetting("METAMCP_DEFAULT_ENDPOINT"),
    default: "",
  },
  {
    env: "METAMCP_STDIO_SERVERS",
    description:
      "Who may create or change STDIO MCP servers (processes inside the app): managers (APP_CAN_MANAGE; the runtime's default), everyone, or off (docs/stdio-servers.md).",
    schema: appSetting("METAMCP_STDIO_SERVERS"),
    default: "",
  },
  {
    env: "METAMCP_SERVER_ENV_ALLOW",
    description:
      "Which of the app's variables an MCP server's env values may name as placeholders: a comma list of names and NAME_* prefixes (empty: only HOME, LOGNAME, PATH, SHELL, TERM, USER; never the app's own secrets).",
    schema: appSetting("METAMCP_SERVER_ENV_ALLOW"),
    default: "",
  },
  {
    env: "METAMCP_SESSION_IDLE_MINUTES",
    description:
      "Minutes after which an idle MCP session is ended (the runtime's default: 30; at most 1440).",
    schema: appSetting("METAMCP_SESSION_IDLE_MINUTES"),
    default: "",
  },
  {
    env: "METAMCP_TRUSTED_PROXY_ADDRESSES",
    description:
      "Own-host addresses whose identity headers the app still believes (only `local` needs it; leave it empty on Databricks, where only the Apps proxy speaks for people).",
    schema: appSetting("METAMCP_TRUSTED_PROXY_ADDRESSES"),
    default: "",
  },
  {
    env: "METAMCP_AUDIT",
    description:
      "Record every MCP request in <schema>.databricks_tool_calls: on (the runtime's default) or off (docs/audit.md).",
    schema: appSetting("METAMCP_AUDIT"),
    default: "",
  },
  {
    env: "METAMCP_AUDIT_ARGUMENTS",
    description:
      "What the audit keeps of a call's arguments: off (the runtime's default), hash, or full (masked and capped).",
    schema: appSetting("METAMCP_AUDIT_ARGUMENTS"),
    default: "",
  },
  {
    env: "METAMCP_AUDIT_DAYS",
    description: "Days the audit keeps its rows (the runtime's default: 90).",
    schema: appSetting("METAMCP_AUDIT_DAYS"),
    default: "",
  },
  {
    env: "METAMCP_TELEMETRY",
    description:
      "OpenTelemetry spans of every MCP request: off (the runtime's default) or otlp, to the app's telemetry destination (the platform's, from METAMCP_TELEMETRY_TABLES, or METAMCP_TELEMETRY_ENDPOINT; docs/audit.md).",
    schema: appSetting("METAMCP_TELEMETRY"),
    default: "",
  },
  {
    env: "METAMCP_TELEMETRY_PRINCIPAL",
    description:
      "Whether spans say who called (enduser.id, an email or a service principal id): off (the runtime's default) or on.",
    schema: appSetting("METAMCP_TELEMETRY_PRINCIPAL"),
    default: "",
  },
  {
    env: "METAMCP_TELEMETRY_TABLES",
    description:
      "The app's telemetry export to Unity Catalog (Public Preview): <catalog>.<schema> or <catalog>.<schema>.<prefix>, rendered into the app's telemetry_export_destinations (tables <prefix>_otel_spans, _otel_logs, _otel_metrics; docs/audit.md).",
    schema: z
      .string()
      .regex(
        TELEMETRY_TABLES_FORM,
        "<catalog>.<schema> or <catalog>.<schema>.<prefix>: letters, digits and underscores, not starting with a digit",
      ),
    default: "",
  },
  {
    env: "METAMCP_TELEMETRY_ENDPOINT",
    description:
      "An OTLP collector of your own for the spans, its traces URL (OTLP/HTTP: …/v1/traces); empty: the platform's telemetry export (it sets OTEL_EXPORTER_OTLP_ENDPOINT).",
    schema: appSetting("METAMCP_TELEMETRY_ENDPOINT"),
    default: "",
  },
  {
    env: "METAMCP_TELEMETRY_PROTOCOL",
    description: "That collector's protocol: grpc, http/protobuf (the runtime's default) or http/json.",
    schema: appSetting("METAMCP_TELEMETRY_PROTOCOL"),
    default: "",
  },
  {
    env: "METAMCP_DATABRICKS_TOOLS",
    description:
      "Databricks' managed MCP servers (/api/2.0/mcp/… on the app's workspace) called with the app's fresh token: on (the runtime's default) or off (docs/databricks-tools.md).",
    schema: appSetting("METAMCP_DATABRICKS_TOOLS"),
    default: "",
  },
  {
    env: "METAMCP_DATABRICKS_APP_IDENTITY",
    description:
      "Who may add or change a workspace server that runs as the app's service principal: managers (the runtime's default), everyone, or off.",
    schema: appSetting("METAMCP_DATABRICKS_APP_IDENTITY"),
    default: "",
  },
  {
    env: "LOCAL_STATE_DIR",
    description: "`local`: where the embedded PostgreSQL data, credentials and PIDs live.",
    schema: pathValue,
    default: ".metamcp-local",
  },
  {
    env: "LOCAL_PORT",
    flag: "port",
    description: "`local`: the port of the local Apps proxy (what your browser and MCP clients use).",
    schema: z
      .string()
      .refine(
        (v) => /^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535,
        "must be a port number from 1 to 65535",
      ),
    default: "8000",
  },
];

export type VariableName = (typeof VARIABLES)[number]["env"];
