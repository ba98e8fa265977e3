import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { Document, parse } from "yaml";
import type { Config } from "../config/load.js";
import { TARGETS, type Target } from "../config/variables.js";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { maskSecrets } from "../log/secrets.js";
import { placeholderKind } from "../placeholders.js";
import { appAccess, appPermissions } from "./access.js";
import { mergeBundleFile } from "./bundle-file.js";
import { MIN_CLI_VERSION } from "./cli-version.js";

/**
 * `databricks.yml` and `app.yaml`, rendered from the one config. The bundle root is the folder that
 * holds the app tree (default `build/`), so `source_code_path` is the app tree itself and the sync
 * needs no path outside the root. Both targets live in one file; each gets its own names.
 */

/** The resource keys inside the bundle (stable: `bundle summary` is read by these). */
export const BUNDLE_KEYS = {
  app: "metamcp",
  project: "metamcp_db",
  role: "metamcp_owner",
  database: "metamcp_db",
} as const;

/** The app resources' names, which app.yaml's `valueFrom` refers to. */
export const APP_RESOURCE_NAMES = {
  postgres: "postgres",
  database: "database",
  secret: "better-auth-secret",
} as const;

/**
 * The Postgres role that owns the database the bundle creates (the live API requires a `role` on a
 * database). Our own, declared in the bundle, so it does not depend on who deploys.
 */
export const OWNER_ROLE = { id: "metamcp-owner", postgres: "metamcp_owner" } as const;

/** The CLI floor (cli-version.ts, with its sources); the bundle states it so the CLI refuses an older binary. */
export { MIN_CLI_VERSION as MIN_BUNDLE_CLI_VERSION } from "./cli-version.js";

/** The app.yaml variable that carries the app's public URL (the platform injects none). */
export const APP_URL_ENV = "METAMCP_APP_URL";

/**
 * The app.yaml variable that names the app's managers (APP_CAN_MANAGE as configured): the runtime trusts
 * them (e.g. with STDIO servers), the same people the app's `permissions` make CAN_MANAGE.
 */
export const APP_MANAGERS_ENV = "METAMCP_APP_MANAGERS";

/** The app.yaml variable naming the MetaMCP endpoint the app serves at `/mcp` (an `mcp-` app's AI Playground path). */
export const DEFAULT_ENDPOINT_ENV = "METAMCP_DEFAULT_ENDPOINT";

/** A bundle interpolation, `${path}`, resolved by the Databricks CLI (never by us). */
export function ref(path: string): string {
  return `$${"{"}${path}}`;
}

/** Settings of the runtime (src/runtime/env.ts readAppSettings) that the config carries into app.yaml. */
export const APP_SETTINGS = [
  DEFAULT_ENDPOINT_ENV,
  "METAMCP_STDIO_SERVERS",
  "METAMCP_SERVER_ENV_ALLOW",
  "METAMCP_SESSION_IDLE_MINUTES",
  "METAMCP_TRUSTED_PROXY_ADDRESSES",
  "METAMCP_AUDIT",
  "METAMCP_AUDIT_ARGUMENTS",
  "METAMCP_AUDIT_DAYS",
  "METAMCP_TELEMETRY",
  "METAMCP_TELEMETRY_PRINCIPAL",
  "METAMCP_TELEMETRY_ENDPOINT",
  "METAMCP_TELEMETRY_PROTOCOL",
  "METAMCP_DATABRICKS_TOOLS",
  "METAMCP_DATABRICKS_APP_IDENTITY",
] as const;

export const APP_COMMAND = ["node", "runtime/start.mjs"] as const;

export interface RenderOptions {
  /**
   * The app's public URL, once the app exists (`GET /api/2.0/apps/{name}` as the deploying user): written
   * into app.yaml so the runtime needs no permission to read its own app.
   */
  appUrl?: string;
  /**
   * `lifecycle.started` (default true). bundle-deploy renders false only for the very first deploy, which
   * creates the app without deploying code: the URL does not exist before the app does.
   */
  started?: boolean;
  /**
   * The databricks.yml to lay the rendered keys into (the user's edits survive); default: the file in the
   * bundle root, if any. `null`: start from nothing.
   */
  base?: string | null;
}

export interface RenderedBundle {
  /** Where `databricks.yml` goes for `bundle-deploy`: the parent of the app tree. */
  bundleDir: string;
  appDir: string;
  databricksYml: string;
  appYaml: string;
  /** The bundle variables for the selected target, passed as `--var name=value` too. */
  variables: Record<string, string>;
  warnings: string[];
}

/** Bundle variables (snake_case) and where each value comes from in the config. */
function bundleVariables(config: Config): Record<string, string> {
  const vars: Record<string, string> = {
    app_name: config.appName,
    db_schema: config.schema,
    lakebase_database: config.lakebase.database,
    secret_scope: config.secret.scope,
    secret_key: config.secret.key,
    compute_size: config.values.APP_COMPUTE_SIZE?.value ?? "MEDIUM",
  };
  if (config.lakebase.kind === "autoscaling") {
    vars.lakebase_project = config.lakebase.project;
    vars.lakebase_branch = config.lakebase.branch;
    vars.lakebase_database_id = config.lakebase.databaseId;
  } else {
    vars.lakebase_instance = config.lakebase.instanceName;
  }
  return vars;
}

const VARIABLE_DESCRIPTIONS: Record<string, string> = {
  app_name: "Databricks App name (APP_NAME)",
  db_schema: "PostgreSQL schema holding every MetaMCP table (METAMCP_DB_SCHEMA)",
  lakebase_project: "Lakebase autoscaling project id (LAKEBASE_PROJECT)",
  lakebase_branch: "Lakebase branch the app uses (LAKEBASE_BRANCH)",
  lakebase_instance: "Lakebase provisioned (legacy) instance the app attaches to (LAKEBASE_INSTANCE_NAME)",
  lakebase_database: "PostgreSQL database name in Lakebase (LAKEBASE_DATABASE)",
  lakebase_database_id: "Lakebase database resource id, the last segment of its path (LAKEBASE_DATABASE_ID)",
  secret_scope:
    "Secret scope holding BETTER_AUTH_SECRET (SECRET_SCOPE; created before the bundle by bundle-deploy)",
  secret_key: "Key of BETTER_AUTH_SECRET in the scope (SECRET_KEY)",
  compute_size: "The app's compute size: MEDIUM, LARGE or XLARGE (APP_COMPUTE_SIZE)",
};

/** `projects/P/branches/B` of the branch the app uses. */
function branchPath(config: Config): string {
  const project = config.lakebase.create
    ? ref(`resources.postgres_projects.${BUNDLE_KEYS.project}.id`)
    : `projects/${ref("var.lakebase_project")}`;
  return `${project}/branches/${ref("var.lakebase_branch")}`;
}

function appResources(config: Config): unknown[] {
  const { kind, create } = config.lakebase;
  // The scope is made (with its key) before `bundle deploy` runs: the bundle only names it, so the key
  // exists when the platform creates and starts the app.
  const secret = {
    name: APP_RESOURCE_NAMES.secret,
    secret: { scope: ref("var.secret_scope"), key: ref("var.secret_key"), permission: "READ" },
  };
  if (kind === "autoscaling") {
    // References to the bundle's own resources order the app after them.
    const database = create
      ? ref(`resources.postgres_databases.${BUNDLE_KEYS.database}.id`)
      : `${branchPath(config)}/databases/${ref("var.lakebase_database_id")}`;
    return [
      {
        name: APP_RESOURCE_NAMES.postgres,
        postgres: { branch: branchPath(config), database, permission: "CAN_CONNECT_AND_CREATE" },
      },
      secret,
    ];
  }
  // Provisioned (legacy): always an existing instance, attached by name.
  return [
    {
      name: APP_RESOURCE_NAMES.database,
      database: {
        instance_name: ref("var.lakebase_instance"),
        database_name: ref("var.lakebase_database"),
        permission: "CAN_CONNECT_AND_CREATE",
      },
    },
    secret,
  ];
}

/**
 * The Apps telemetry export to Unity Catalog (Public Preview; docs/audit.md "Telemetry"): the app resource's
 * `telemetry_export_destinations` (the CLI's bundle schema: `apps.TelemetryExportDestination`, one
 * `unity_catalog` of `logs_table`, `metrics_table` and `traces_table`, all three required; the direct engine
 * sends it in the app's update mask). The platform then runs a collector beside the app and names it in
 * OTEL_EXPORTER_OTLP_ENDPOINT, which METAMCP_TELEMETRY=otlp sends the spans to. Table names as the
 * workspace UI makes them from a catalog, schema and optional prefix.
 */
function telemetryExport(config: Config): Record<string, unknown> {
  const tables = config.values.METAMCP_TELEMETRY_TABLES?.value;
  if (!tables) return {};
  const [catalog, schema, prefix] = tables.split(".");
  const table = (kind: string) => `${catalog}.${schema}.${prefix ? `${prefix}_` : ""}otel_${kind}`;
  return {
    telemetry_export_destinations: [
      {
        unity_catalog: {
          traces_table: table("spans"),
          logs_table: table("logs"),
          metrics_table: table("metrics"),
        },
      },
    ],
  };
}

/**
 * What the bundle creates for Lakebase: nothing when it attaches (LAKEBASE_CREATE=false, or provisioned);
 * else the project, an owner role and OUR database with an explicit, valid id (docs/lakebase-database.md).
 */
function databaseResources(config: Config): Record<string, unknown> {
  if (!config.lakebase.create || config.lakebase.kind !== "autoscaling") return {};
  const parent = branchPath(config);
  return {
    postgres_projects: {
      [BUNDLE_KEYS.project]: { project_id: ref("var.lakebase_project"), display_name: ref("var.app_name") },
    },
    postgres_roles: {
      [BUNDLE_KEYS.role]: { parent, role_id: OWNER_ROLE.id, postgres_role: OWNER_ROLE.postgres },
    },
    postgres_databases: {
      [BUNDLE_KEYS.database]: {
        parent,
        database_id: ref("var.lakebase_database_id"),
        postgres_database: ref("var.lakebase_database"),
        role: ref(`resources.postgres_roles.${BUNDLE_KEYS.role}.id`),
      },
    },
  };
}

/**
 * dev: `bundle destroy` deletes the project the bundle created for good (`purge_on_delete`), so the next
 * dev deploy can reuse its id. A target override repeats each resource's required id field: the CLI's
 * schema asks for it there too.
 */
function devOverrides(config: Config): Record<string, unknown> {
  if (!config.lakebase.create || config.lakebase.kind !== "autoscaling") return {};
  return {
    postgres_projects: {
      [BUNDLE_KEYS.project]: { project_id: ref("var.lakebase_project"), purge_on_delete: true },
    },
  };
}

/** prod keeps its database through a `bundle destroy`. */
function prodProtection(config: Config): Record<string, unknown> {
  if (!config.lakebase.create || config.lakebase.kind !== "autoscaling") return {};
  const keep = { lifecycle: { prevent_destroy: true } };
  const parent = branchPath(config);
  return {
    postgres_projects: { [BUNDLE_KEYS.project]: { project_id: ref("var.lakebase_project"), ...keep } },
    postgres_roles: { [BUNDLE_KEYS.role]: { parent, role_id: OWNER_ROLE.id, ...keep } },
    postgres_databases: {
      [BUNDLE_KEYS.database]: {
        parent,
        database_id: ref("var.lakebase_database_id"),
        role: ref(`resources.postgres_roles.${BUNDLE_KEYS.role}.id`),
        ...keep,
      },
    },
  };
}

function appYamlObject(config: Config, options: RenderOptions): Record<string, unknown> {
  const env: { name: string; value?: string; valueFrom?: string }[] = [
    { name: "METAMCP_DB_SCHEMA", value: config.schema },
    { name: "LAKEBASE_KIND", value: config.lakebase.kind },
  ];
  if (config.lakebase.kind === "autoscaling")
    env.push({ name: "LAKEBASE_ENDPOINT", valueFrom: APP_RESOURCE_NAMES.postgres });
  // A provisioned resource's valueFrom resolves to the host, not the instance: the name comes from config.
  else env.push({ name: "LAKEBASE_INSTANCE_NAME", value: config.lakebase.instanceName });
  env.push({ name: "BETTER_AUTH_SECRET", valueFrom: APP_RESOURCE_NAMES.secret });
  if (options.appUrl) env.push({ name: APP_URL_ENV, value: options.appUrl });
  const managers = appAccess(config).managersValue;
  if (managers) env.push({ name: APP_MANAGERS_ENV, value: managers });
  // The runtime's settings, each only when set (unset: the runtime's own default; src/config checked them
  // with the runtime's reader).
  for (const name of APP_SETTINGS) {
    const value = config.values[name]?.value;
    if (value) env.push({ name, value });
  }
  // Only when not the runtime's own default (off), so the usual app.yaml stays as it was.
  if (config.values.METAMCP_EMAIL_SIGNUP?.value === "on")
    env.push({ name: "METAMCP_EMAIL_SIGNUP", value: "on" });
  return { command: [...APP_COMMAND], env };
}

function toYaml(value: unknown, header: string): string {
  // No YAML anchors: a reader (and the CLI's own loader) sees every value where it applies.
  const doc = new Document(value, { aliasDuplicateObjects: false });
  doc.commentBefore = header;
  return doc.toString({ lineWidth: 0 });
}

const HEADER = (what: string) =>
  ` ${what}: generated by \`metamcp-databricks render\` from the one config (.env / environment).\n Do not edit: change the config and render again.`;

const BUNDLE_HEADER = [
  " Databricks Asset Bundle of metamcp-databricks: `render` and `bundle-deploy` keep it up to date from the one",
  " config (.env / environment). Keys they write are set from the config on every run (change the config,",
  " not them); keys you add (tags, budget_policy_id or compute_max_instances on the app, a target of your own,",
  " comments) are kept, also when this project is upgraded. Who may open the app: APP_CAN_USE / APP_CAN_MANAGE.",
].join("\n");

/** The managed Lakebase resources: one entry each, ours by key. */
const LAKEBASE_RESOURCES: [string, string][] = [
  ["postgres_projects", BUNDLE_KEYS.project],
  ["postgres_roles", BUNDLE_KEYS.role],
  ["postgres_databases", BUNDLE_KEYS.database],
];

/** Resources earlier versions of this project wrote and this one no longer does: removed on upgrade. */
const LEGACY_RESOURCES: [string, string][] = [["secret_scopes", "metamcp_secrets"]];

/** App fields the config sets (the rest of the app resource is the user's). */
const APP_FIELDS = [
  "name",
  "description",
  "source_code_path",
  "lifecycle",
  "compute_size",
  "resources",
  "permissions",
  "telemetry_export_destinations",
];

/**
 * Horizontal scaling (Beta, 1–5 instances; docs/scaling.md), when APP_MIN/MAX_INSTANCES are set: then the
 * app's instance counts are ours; unset, whatever the file holds is the user's and stays.
 */
export function instanceFields(
  config: Config,
): { compute_min_instances: number; compute_max_instances: number } | undefined {
  const min = config.values.APP_MIN_INSTANCES?.value ?? "";
  const max = config.values.APP_MAX_INSTANCES?.value ?? "";
  if (min === "" || max === "") return undefined;
  return { compute_min_instances: Number(min), compute_max_instances: Number(max) };
}

/**
 * Paths in databricks.yml that are ours even when this render leaves them out: removed then (a variable of
 * the other Lakebase kind, the project after a switch to attaching one, permissions once APP_CAN_* is empty).
 */
function ownedPaths(config: Config): string[][] {
  const instances = Object.keys(instanceFields(config) ?? {});
  const OURS = [...LAKEBASE_RESOURCES, ...LEGACY_RESOURCES];
  const vars = Object.keys(VARIABLE_DESCRIPTIONS);
  return [
    ...vars.map((k) => ["variables", k]),
    ...TARGETS.flatMap((t) => vars.map((k) => ["targets", t, "variables", k])),
    ...OURS.map(([type, key]) => ["resources", type, key]),
    ...TARGETS.flatMap((t) => OURS.map(([type, key]) => ["targets", t, "resources", type, key])),
    ...[...APP_FIELDS, ...instances].map((f) => ["resources", "apps", BUNDLE_KEYS.app, f]),
  ];
}

function readBase(bundleDir: string, base: string | null | undefined): string | undefined {
  if (base === null) return undefined;
  if (base !== undefined) return base;
  const file = path.join(bundleDir, "databricks.yml");
  return existsSync(file) ? readFileSync(file, "utf8") : undefined;
}

/**
 * Renders both files for `config.target`. `configFor(t)` loads the config for another target (the
 * same flags/env/.env) so each target in `databricks.yml` carries its own derived names.
 */
export function renderBundle(
  config: Config,
  configFor: (target: Target) => Config,
  options: RenderOptions = {},
): RenderedBundle {
  const bundleDir = path.dirname(config.appDir);
  const appRel = path.basename(config.appDir);
  const warnings: string[] = [];
  const perTarget = Object.fromEntries(
    TARGETS.map((t) => [t, t === config.target ? config : configFor(t)]),
  ) as Record<Target, Config>;
  if (perTarget.dev.appName === perTarget.prod.appName) {
    warnings.push(
      `dev and prod both name the app ${perTarget.dev.appName} (APP_NAME is set explicitly): set APP_BASE_NAME instead so each target gets its own app`,
    );
  }
  if (config.values.METAMCP_TELEMETRY_TABLES?.value && config.values.METAMCP_TELEMETRY?.value !== "otlp")
    warnings.push(
      "METAMCP_TELEMETRY_TABLES turns the app's telemetry export on, but the app sends no MCP spans to it: set METAMCP_TELEMETRY=otlp (the platform still exports its own logs and usage events)",
    );
  const variables = bundleVariables(config);
  const permissions = appPermissions(appAccess(config));
  const root = {
    bundle: {
      name: `${config.values.APP_BASE_NAME?.value ?? "metamcp"}-databricks`,
      // lifecycle.started (and our postgres resources) need the direct engine; stated here, it wins over
      // DATABRICKS_BUNDLE_ENGINE in the environment.
      engine: "direct",
      databricks_cli_version: `>= ${MIN_CLI_VERSION}`,
    },
    variables: Object.fromEntries(
      Object.keys(variables).map((k) => [k, { description: VARIABLE_DESCRIPTIONS[k] ?? k }]),
    ),
    // The app tree only: build/ is git-ignored (include re-adds it); secrets and caches never go up.
    sync: {
      paths: [appRel],
      include: [`${appRel}/**`],
      exclude: [`${appRel}/**/.env`, `${appRel}/**/.env.*`, `${appRel}/**/.cache/**`, `${appRel}/**/.git/**`],
    },
    resources: {
      ...databaseResources(config),
      apps: {
        [BUNDLE_KEYS.app]: {
          name: ref("var.app_name"),
          description: "MetaMCP gateway, deployed by metamcp-databricks",
          source_code_path: `./${appRel}`,
          // Started: `bundle deploy` starts the app and deploys source_code_path itself (direct engine).
          lifecycle: { started: options.started ?? true },
          compute_size: ref("var.compute_size"),
          ...instanceFields(config),
          resources: appResources(config),
          // Without permissions only the deployer can open the app (APP_CAN_USE / APP_CAN_MANAGE).
          ...(permissions.length ? { permissions } : {}),
          ...telemetryExport(config),
        },
      },
    },
    targets: {
      dev: {
        mode: "development",
        default: true,
        variables: bundleVariables(perTarget.dev),
        ...(Object.keys(devOverrides(config)).length ? { resources: devOverrides(config) } : {}),
      },
      prod: {
        mode: "production",
        workspace: {
          root_path: `/Workspace/Users/${ref("workspace.current_user.userName")}/.bundle/${ref("bundle.name")}/${ref("bundle.target")}`,
        },
        variables: bundleVariables(perTarget.prod),
        ...(Object.keys(prodProtection(config)).length ? { resources: prodProtection(config) } : {}),
      },
    },
  };
  const databricksYml = mergeBundleFile(
    readBase(bundleDir, options.base),
    root,
    ownedPaths(config),
    BUNDLE_HEADER,
    path.join(bundleDir, "databricks.yml"),
  );
  const appYaml = toYaml(appYamlObject(config, options), HEADER(`App config for target ${config.target}`));
  checkAppYaml(appYaml);
  return { bundleDir, appDir: config.appDir, databricksYml, appYaml, variables, warnings };
}

/**
 * app.yaml may hold neither a secret nor an unresolved placeholder. A secret is any value the process has
 * registered with the masking logger (a repository token, a credential it received): app.yaml is synced to
 * the workspace as a plain file.
 */
export function checkAppYaml(text: string): void {
  if (maskSecrets(text) !== text)
    throw new UserError(
      "secret_in_app_yaml",
      "app.yaml would contain a secret value: refusing to write it",
      EXIT.input,
    );
  const placeholder = stringsIn(parse(text)).find(([, value]) => placeholderKind(value, "setting"));
  if (placeholder) {
    const [where, value] = placeholder;
    throw new UserError(
      "placeholder_in_app_yaml",
      `app.yaml would contain an unresolved placeholder (${JSON.stringify(value)} at ${where}): the platform expands no placeholders`,
      EXIT.input,
      "set the configuration variable it comes from to a real value, then render again",
    );
  }
  if (/BETTER_AUTH_SECRET\s*\n\s*value:/.test(text)) {
    throw new UserError(
      "secret_in_app_yaml",
      "BETTER_AUTH_SECRET must come from valueFrom, never a value",
      EXIT.input,
    );
  }
}

/** Every string in a parsed YAML document, with where it is (`env[2].value`). */
function stringsIn(node: unknown, where = ""): [string, string][] {
  if (typeof node === "string") return [[where || "top level", node]];
  if (Array.isArray(node)) return node.flatMap((item, i) => stringsIn(item, `${where}[${i}]`));
  if (node && typeof node === "object")
    return Object.entries(node).flatMap(([key, value]) => stringsIn(value, where ? `${where}.${key}` : key));
  return [];
}

export interface WrittenBundle {
  databricksYml: string;
  appYaml: string;
}

function writeAtomic(file: string, text: string): void {
  // Unchanged content keeps the file (and its mtime, which the deploy record's fingerprint reads).
  if (sameContent(file, text)) return;
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic.sync(file, text);
}

/** databricks.yml alone, where bundle-deploy uses it (the app tree is not touched). */
export function writeDatabricksYml(rendered: RenderedBundle): string {
  const file = path.join(rendered.bundleDir, "databricks.yml");
  writeAtomic(file, rendered.databricksYml);
  return file;
}

/**
 * Writes the files where `bundle-deploy` uses them (databricks.yml beside the app tree, app.yaml inside
 * it), or both into `outDir` for review. The content is the same either way.
 */
export function writeBundle(rendered: RenderedBundle, outDir?: string): WrittenBundle {
  const ymlPath = path.join(outDir ?? rendered.bundleDir, "databricks.yml");
  const appYamlPath = path.join(outDir ?? rendered.appDir, "app.yaml");
  if (!outDir && !existsSync(rendered.appDir)) {
    throw new UserError(
      "no_app_tree",
      `no app tree in ${rendered.appDir}: app.yaml belongs inside it`,
      EXIT.input,
      "run `make build` first (or `render --out DIR` to only look at the files)",
    );
  }
  writeAtomic(ymlPath, rendered.databricksYml);
  writeAtomic(appYamlPath, rendered.appYaml);
  return { databricksYml: ymlPath, appYaml: appYamlPath };
}

/** True when the file on disk already holds exactly this text. */
export function sameContent(file: string, text: string): boolean {
  return existsSync(file) && readFileSync(file, "utf8") === text;
}

export interface RenderCommandResult extends WrittenBundle {
  target: Target;
  bundleDir: string;
  variables: Record<string, string>;
}

/**
 * render: both files for the config's target, written where bundle-deploy uses them or into `outDir`
 * (a folder, for review or CI diffs).
 */
export function renderToFiles(
  config: Config,
  configFor: (target: Target) => Config,
  log: Logger,
  outDir?: string,
): RenderCommandResult {
  const rendered = renderBundle(config, configFor);
  for (const w of rendered.warnings) log.warn(w);
  if (outDir && existsSync(outDir) && !statSync(outDir).isDirectory())
    throw new UserError(
      "out_not_a_folder",
      `--out ${outDir} is a file: --out names a FOLDER that receives databricks.yml and app.yaml`,
      EXIT.input,
      "give a folder (new or existing), e.g. --out rendered/",
    );
  let written: WrittenBundle;
  try {
    written = writeBundle(rendered, outDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!code || err instanceof UserError) throw err;
    throw new UserError(
      "render_write_failed",
      `cannot write the rendered files${outDir ? ` into ${outDir}` : ""} (${code}: ${(err as Error).message})`,
      EXIT.input,
      "choose a folder you can write (--out DIR), or fix its permissions",
    );
  }
  return {
    target: config.target,
    ...written,
    bundleDir: rendered.bundleDir,
    variables: rendered.variables,
  };
}
