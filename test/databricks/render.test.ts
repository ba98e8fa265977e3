// biome-ignore-all lint/suspicious/noTemplateCurlyInString: bundle interpolations are literal text in these expectations
import { readFileSync } from "node:fs";
import path from "node:path";
import { Ajv } from "ajv";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import type { Target } from "../../src/config/variables.js";
import { checkAppYaml, type RenderOptions, renderBundle } from "../../src/databricks/render.js";
import { readAppSettings } from "../../src/runtime/env.js";
import { findBundleSchema } from "../support/bundle-schema.js";
import { PROJECT_ROOT, runCli } from "../support/cli.js";
import { expectGolden } from "../support/golden.js";
import { tempDir } from "../support/tmp.js";

// The Databricks CLI's own JSON schema for databricks.yml, never copied here: ../shared's copy, else what an
// installed CLI's `databricks bundle schema` prints (test/support/bundle-schema.ts); with neither, the schema
// checks say "skipped: …" and which source would unblock them.
const BUNDLE_SCHEMA = findBundleSchema();
const NO_SCHEMA = BUNDLE_SCHEMA.skip ? ` (skipped: ${BUNDLE_SCHEMA.skip})` : "";
const ajv = new Ajv({ strict: false, allErrors: true });
const validateBundle = BUNDLE_SCHEMA.schema ? ajv.compile(BUNDLE_SCHEMA.schema) : undefined;

function render(env: Record<string, string>, target: Target = "dev", options?: RenderOptions) {
  const load = (t: Target) =>
    loadConfig({ cwd: "/work/project", env: { ...env, TARGET: t }, dotenvPath: "/nonexistent" });
  const config = load(target);
  return { config, rendered: renderBundle(config, load, options) };
}

function schemaErrors(doc: unknown): string {
  if (!validateBundle) throw new Error("no schema");
  return validateBundle(doc) ? "" : ajv.errorsText(validateBundle.errors, { separator: "\n" });
}

// biome-ignore lint/suspicious/noExplicitAny: walking parsed YAML
type Yml = any;

describe("databricks.yml", () => {
  const cases: { name: string; env: Record<string, string>; target: Target; options?: RenderOptions }[] = [
    { name: "autoscaling dev", env: {}, target: "dev" },
    { name: "autoscaling prod", env: {}, target: "prod" },
    { name: "provisioned (attached) dev", env: { LAKEBASE_KIND: "provisioned" }, target: "dev" },
    { name: "provisioned (attached) prod", env: { LAKEBASE_KIND: "provisioned" }, target: "prod" },
    {
      name: "existing autoscaling",
      env: { LAKEBASE_CREATE: "false", LAKEBASE_PROJECT: "shared-db" },
      target: "dev",
    },
    {
      name: "first deploy (app created stopped)",
      env: {},
      target: "dev",
      options: { started: false },
    },
    {
      name: "several instances (APP_MIN_INSTANCES / APP_MAX_INSTANCES)",
      env: { APP_MIN_INSTANCES: "2", APP_MAX_INSTANCES: "5" },
      target: "prod",
    },
    {
      name: "with the app URL",
      env: {},
      target: "prod",
      options: { appUrl: "https://metamcp-1234.aws.databricksapps.com" },
    },
    {
      name: "with the telemetry export to Unity Catalog",
      env: { METAMCP_TELEMETRY_TABLES: "main.observability.metamcp", METAMCP_TELEMETRY: "otlp" },
      target: "prod",
    },
  ];
  test.skipIf(!validateBundle).each(cases)(
    `$name validates against the Databricks CLI's bundle schema${NO_SCHEMA}`,
    ({ env, target, options }) => {
      const { rendered } = render(env, target, options);
      expect(schemaErrors(parse(rendered.databricksYml))).toBe("");
    },
  );

  test.skipIf(!validateBundle)(
    `the schema check is real: a wrong key and a wrong permission are rejected${NO_SCHEMA}`,
    () => {
      const doc: Yml = parse(render({}).rendered.databricksYml);
      doc.resources.apps.metamcp.resources[0].postgres.permission = "CAN_USE";
      doc.resources.apps.metamcp.startd = true;
      const errors = schemaErrors(doc);
      expect(errors).toMatch(/additional properties/);
      expect(errors).toMatch(/allowed values/);
    },
  );

  test("direct engine and the CLI floor; autoscaling: project, owner role and OUR database with a valid id; the app reaches it by the database's id path; started; the secret by scope name", () => {
    const { rendered } = render({});
    const doc: Yml = parse(rendered.databricksYml);
    expect(doc.bundle).toEqual({
      name: "metamcp-databricks",
      engine: "direct",
      databricks_cli_version: ">= 1.4.0",
    });
    expect(doc.resources.postgres_projects.metamcp_db).toEqual({
      project_id: "${var.lakebase_project}",
      display_name: "${var.app_name}",
    });
    const branch = "${resources.postgres_projects.metamcp_db.id}/branches/${var.lakebase_branch}";
    expect(doc.resources.postgres_roles.metamcp_owner).toEqual({
      parent: branch,
      role_id: "metamcp-owner",
      postgres_role: "metamcp_owner",
    });
    expect(doc.resources.postgres_databases.metamcp_db).toEqual({
      parent: branch,
      database_id: "${var.lakebase_database_id}",
      postgres_database: "${var.lakebase_database}",
      role: "${resources.postgres_roles.metamcp_owner.id}",
    });
    expect(doc.targets.dev.variables).toMatchObject({
      lakebase_database: "metamcp",
      lakebase_database_id: "metamcp",
    });
    const app = doc.resources.apps.metamcp;
    expect(app.lifecycle).toEqual({ started: true });
    expect(app.source_code_path).toBe("./app");
    expect(app.resources).toEqual([
      {
        name: "postgres",
        postgres: {
          branch,
          database: "${resources.postgres_databases.metamcp_db.id}",
          permission: "CAN_CONNECT_AND_CREATE",
        },
      },
      {
        name: "better-auth-secret",
        secret: { scope: "${var.secret_scope}", key: "${var.secret_key}", permission: "READ" },
      },
    ]);
    // The scope is made (with its key) before the bundle; the bundle does not manage it.
    expect(doc.resources.secret_scopes).toBeUndefined();
    expect(doc.resources.database_instances).toBeUndefined();
    // The very first deploy creates the app stopped: no code runs before its URL is known.
    const first: Yml = parse(render({}, "dev", { started: false }).rendered.databricksYml);
    expect(first.resources.apps.metamcp.lifecycle).toEqual({ started: false });
  });

  test("each target carries its own derived names; prod protects its data from bundle destroy", () => {
    const doc: Yml = parse(render({ APP_BASE_NAME: "acme-mcp" }).rendered.databricksYml);
    expect(doc.targets.dev.mode).toBe("development");
    expect(doc.targets.dev.default).toBe(true);
    expect(doc.targets.dev.variables).toMatchObject({
      app_name: "acme-mcp-dev",
      lakebase_project: "acme-mcp-dev-db",
      secret_scope: "acme-mcp-dev-secrets",
    });
    expect(doc.targets.prod.mode).toBe("production");
    expect(doc.targets.prod.variables).toMatchObject({
      app_name: "acme-mcp",
      lakebase_project: "acme-mcp-db",
      secret_scope: "acme-mcp-secrets",
    });
    expect(doc.targets.prod.resources.postgres_projects.metamcp_db.lifecycle.prevent_destroy).toBe(true);
    expect(doc.targets.prod.resources.postgres_databases.metamcp_db.lifecycle.prevent_destroy).toBe(true);
    expect(doc.targets.prod.resources.postgres_projects.metamcp_db.purge_on_delete).toBeUndefined();
    // dev: destroy purges the project the bundle created (no soft-deleted project left behind).
    expect(doc.targets.dev.resources.postgres_projects.metamcp_db).toEqual({
      project_id: "${var.lakebase_project}",
      purge_on_delete: true,
    });
    // Every variable a target sets is declared.
    for (const t of ["dev", "prod"]) {
      const set = Object.keys(doc.targets[t].variables);
      expect(set.length, t).toBeGreaterThan(0);
      for (const k of set) expect(doc.variables[k], `${t}: ${k}`).toBeDefined();
    }
  });

  test("provisioned (legacy): attaches an existing instance, never creates one; attached autoscaling: no Lakebase resource at all, nothing to purge", () => {
    const prov: Yml = parse(render({ LAKEBASE_KIND: "provisioned" }).rendered.databricksYml);
    expect(prov.resources.database_instances).toBeUndefined();
    expect(prov.resources.postgres_projects).toBeUndefined();
    expect(prov.targets.dev.resources).toBeUndefined();
    expect(prov.resources.apps.metamcp.resources[0]).toEqual({
      name: "database",
      database: {
        instance_name: "${var.lakebase_instance}",
        database_name: "${var.lakebase_database}",
        permission: "CAN_CONNECT_AND_CREATE",
      },
    });
    expect(prov.targets.dev.variables.lakebase_database).toBe("databricks_postgres");
    expect(() => render({ LAKEBASE_KIND: "provisioned", LAKEBASE_CREATE: "true" })).toThrow(
      /new provisioned \(legacy\) instances cannot be created since 2026-03-12/,
    );
    const existing: Yml = parse(
      render({ LAKEBASE_CREATE: "false", LAKEBASE_PROJECT: "shared-db" }).rendered.databricksYml,
    );
    expect(existing.resources.postgres_projects).toBeUndefined();
    expect(existing.resources.postgres_databases).toBeUndefined();
    expect(existing.targets.dev.resources).toBeUndefined();
    expect(existing.resources.apps.metamcp.resources[0].postgres).toEqual({
      branch: "projects/${var.lakebase_project}/branches/${var.lakebase_branch}",
      database:
        "projects/${var.lakebase_project}/branches/${var.lakebase_branch}/databases/${var.lakebase_database_id}",
      permission: "CAN_CONNECT_AND_CREATE",
    });
    expect(existing.targets.dev.variables).toMatchObject({
      lakebase_project: "shared-db",
      lakebase_database: "databricks_postgres",
      lakebase_database_id: "databricks-postgres",
    });
    expect(() => render({ LAKEBASE_BRANCH: "dev" })).toThrow(
      /a new Lakebase project has only the branch production/,
    );
  });

  test("sync: only the app tree (re-included past .gitignore), never .env or caches", () => {
    const doc: Yml = parse(render({}).rendered.databricksYml);
    expect(doc.sync.paths).toEqual(["app"]);
    expect(doc.sync.include).toEqual(["app/**"]);
    expect(doc.sync.exclude).toEqual(
      expect.arrayContaining(["app/**/.env", "app/**/.env.*", "app/**/.cache/**"]),
    );
  });

  test("an explicit APP_NAME shared by both targets is warned about", () => {
    expect(render({ APP_NAME: "one-app" }).rendered.warnings.join()).toMatch(
      /dev and prod both name the app one-app/,
    );
    expect(render({}).rendered.warnings).toEqual([]);
  });
});

describe("several instances (horizontal scaling, a Beta: docs/scaling.md)", () => {
  test("APP_MIN/MAX_INSTANCES become the app's compute_min_instances / compute_max_instances, as integers", () => {
    const doc: Yml = parse(render({ APP_MIN_INSTANCES: "2", APP_MAX_INSTANCES: "3" }).rendered.databricksYml);
    expect(doc.resources.apps.metamcp).toMatchObject({ compute_min_instances: 2, compute_max_instances: 3 });
    // Unset: not rendered (one instance, the platform's default).
    const one: Yml = parse(render({}).rendered.databricksYml);
    expect(one.resources.apps.metamcp.compute_min_instances).toBeUndefined();
    expect(one.resources.apps.metamcp.compute_max_instances).toBeUndefined();
  });

  test("ours once set: a re-render follows the config, and a user's own counts stay while it is unset", () => {
    const set = render({ APP_MIN_INSTANCES: "2", APP_MAX_INSTANCES: "3" }).rendered.databricksYml;
    const changed: Yml = parse(
      render({ APP_MIN_INSTANCES: "1", APP_MAX_INSTANCES: "5" }, "dev", { base: set }).rendered.databricksYml,
    );
    expect(changed.resources.apps.metamcp).toMatchObject({
      compute_min_instances: 1,
      compute_max_instances: 5,
    });
    const kept: Yml = parse(render({}, "dev", { base: set }).rendered.databricksYml);
    expect(kept.resources.apps.metamcp).toMatchObject({ compute_min_instances: 2, compute_max_instances: 3 });
  });

  test("refused: outside 1–5, not a whole number, one without the other, min above max", () => {
    const bad = (env: Record<string, string>) => () =>
      loadConfig({ cwd: "/work/project", env, dotenvPath: "/nonexistent" });
    expect(bad({ APP_MIN_INSTANCES: "0", APP_MAX_INSTANCES: "2" })).toThrow(/APP_MIN_INSTANCES="0".*1 to 5/s);
    expect(bad({ APP_MIN_INSTANCES: "1", APP_MAX_INSTANCES: "6" })).toThrow(/APP_MAX_INSTANCES="6".*1 to 5/s);
    expect(bad({ APP_MIN_INSTANCES: "two", APP_MAX_INSTANCES: "2" })).toThrow(/whole number/);
    expect(bad({ APP_MAX_INSTANCES: "3" })).toThrow(/set both/);
    expect(bad({ APP_MIN_INSTANCES: "4", APP_MAX_INSTANCES: "2" })).toThrow(/APP_MIN_INSTANCES=4 is above/);
  });
});

describe("databricks.yml is a file people edit: their keys survive a render and an upgrade", () => {
  const USER_KEYS = (yml: string) =>
    yml
      .replace(
        "      source_code_path: ./app\n",
        "      source_code_path: ./app\n      # finance asked for this one\n      budget_policy_id: 0f1e2d3c-budget\n      compute_max_instances: 1\n",
      )
      .replace(
        "targets:\n",
        "targets:\n  staging:\n    mode: production\n    workspace:\n      host: https://staging.cloud.databricks.com\n",
      )
      .concat("# ours: keep this comment\nexperimental:\n  python:\n    venv_path: .venv\n");

  function expectUserKeys(yml: string) {
    const doc: Yml = parse(yml);
    expect(doc.resources.apps.metamcp.budget_policy_id).toBe("0f1e2d3c-budget");
    expect(doc.resources.apps.metamcp.compute_max_instances).toBe(1);
    expect(doc.targets.staging).toEqual({
      mode: "production",
      workspace: { host: "https://staging.cloud.databricks.com" },
    });
    expect(doc.experimental).toEqual({ python: { venv_path: ".venv" } });
    expect(yml).toContain("      # finance asked for this one\n      budget_policy_id: 0f1e2d3c-budget");
    expect(yml).toContain("# ours: keep this comment\nexperimental:");
  }

  const ATTACHED_WITH_PERMISSIONS = {
    APP_CAN_USE: "data-users",
    APP_COMPUTE_SIZE: "LARGE",
    LAKEBASE_CREATE: "false",
    LAKEBASE_PROJECT: "shared",
  };
  /** A user edits the rendered file; the config changes (permissions, size, Lakebase attached), then back. */
  function reRenders() {
    const first = render({}).rendered.databricksYml;
    const edited = USER_KEYS(first);
    const again = render(ATTACHED_WITH_PERMISSIONS, "dev", { base: edited }).rendered.databricksYml;
    const cleared = render({}, "dev", { base: again }).rendered.databricksYml;
    return { first, edited, again, cleared };
  }
  /** The file an earlier version rendered, with the user's keys, rendered by today's version. */
  function upgraded(): string {
    const previous = readFileSync(
      path.join(PROJECT_ROOT, "test/databricks/fixtures/previous-databricks.yml"),
      "utf8",
    );
    return render({}, "dev", { base: USER_KEYS(previous) }).rendered.databricksYml;
  }

  test("a re-render keeps the user's keys and comments; ours follow the config", () => {
    const { first, edited, again, cleared } = reRenders();
    expect(edited).not.toBe(first);
    expectUserKeys(again);
    const doc: Yml = parse(again);
    expect(doc.resources.apps.metamcp.permissions).toEqual([{ group_name: "data-users", level: "CAN_USE" }]);
    expect(doc.targets.dev.variables.compute_size).toBe("LARGE");
    expect(doc.targets.dev.variables.lakebase_project).toBe("shared");
    // Ours, no longer rendered: gone (the bundle would create a project we now attach).
    expect(doc.resources.postgres_projects).toBeUndefined();
    expect(doc.targets.dev.resources).toBeUndefined();
    expect(doc.targets.prod.resources).toBeUndefined();
    // The same config renders the same file again (no drift, nothing added twice).
    expect(render(ATTACHED_WITH_PERMISSIONS, "dev", { base: again }).rendered.databricksYml).toBe(again);
    // Back to no permissions: ours removed, the user's keys still there.
    expect(parse(cleared).resources.apps.metamcp.permissions).toBeUndefined();
    expectUserKeys(cleared);
  });

  test("an upgrade: the file an earlier version rendered, with the user's keys, becomes today's bundle with them", () => {
    const yml = upgraded();
    expectUserKeys(yml);
    const doc: Yml = parse(yml);
    // Today's managed content: the direct engine, the CLI floor, our database; the earlier scope resource gone.
    expect(doc.bundle).toMatchObject({ engine: "direct", databricks_cli_version: ">= 1.4.0" });
    expect(doc.resources.secret_scopes).toBeUndefined();
    expect(doc.targets.prod.resources.secret_scopes).toBeUndefined();
    expect(doc.resources.postgres_databases.metamcp_db.database_id).toBe("${var.lakebase_database_id}");
    expect(yml).not.toContain("databases/${var.lakebase_database}");
    expect(doc.targets.dev.variables.app_name).toBe("metamcp-dev");
  });

  test.skipIf(!validateBundle)(
    `the user-edited, re-rendered and upgraded files validate against the Databricks CLI's bundle schema${NO_SCHEMA}`,
    () => {
      const { again, cleared } = reRenders();
      for (const [name, yml] of Object.entries({ again, cleared, upgraded: upgraded() }))
        expect(schemaErrors(parse(yml)), name).toBe("");
    },
  );

  test("a databricks.yml that is not YAML is refused with what to do, exit 2", () => {
    expect(() => render({}, "dev", { base: "bundle: [unclosed\n" })).toThrow(
      expect.objectContaining({ code: "bundle_file_unreadable", exitCode: 2 }),
    );
  });
});

describe("app.yaml", () => {
  test("command and env only; the endpoint and the secret via valueFrom; no secret, no placeholder", () => {
    const { rendered } = render({});
    const doc: Yml = parse(rendered.appYaml);
    expect(Object.keys(doc)).toEqual(["command", "env"]);
    expect(doc.command).toEqual(["node", "runtime/start.mjs"]);
    expect(doc.env).toEqual([
      { name: "METAMCP_DB_SCHEMA", value: "metamcp_app" },
      { name: "LAKEBASE_KIND", value: "autoscaling" },
      { name: "LAKEBASE_ENDPOINT", valueFrom: "postgres" },
      { name: "BETTER_AUTH_SECRET", valueFrom: "better-auth-secret" },
    ]);
    // Once the app exists, its public URL (the platform injects none).
    const withUrl: Yml = parse(
      render({}, "dev", { appUrl: "https://metamcp-dev-1234.aws.databricksapps.com" }).rendered.appYaml,
    );
    expect(withUrl.env.at(-1)).toEqual({
      name: "METAMCP_APP_URL",
      value: "https://metamcp-dev-1234.aws.databricksapps.com",
    });
    // valueFrom names must be app resources of the bundle.
    const names = parse(rendered.databricksYml).resources.apps.metamcp.resources.map(
      (r: { name: string }) => r.name,
    );
    for (const e of doc.env) if (e.valueFrom) expect(names).toContain(e.valueFrom);
  });

  test("the runtime's settings reach app.yaml when set, checked by the runtime's own reader (its words, exit 2); unset stays the runtime's default", () => {
    const settings = {
      METAMCP_STDIO_SERVERS: "off",
      METAMCP_SERVER_ENV_ALLOW: "GITHUB_TOKEN,JIRA_*",
      METAMCP_SESSION_IDLE_MINUTES: "45",
      METAMCP_TRUSTED_PROXY_ADDRESSES: "127.0.0.1",
      METAMCP_DEFAULT_ENDPOINT: "tools",
      METAMCP_AUDIT: "off",
      METAMCP_AUDIT_ARGUMENTS: "hash",
      METAMCP_AUDIT_DAYS: "30",
      METAMCP_TELEMETRY: "otlp",
      METAMCP_TELEMETRY_PRINCIPAL: "on",
      METAMCP_TELEMETRY_ENDPOINT: "https://otel.example.com/v1/traces",
      METAMCP_TELEMETRY_PROTOCOL: "http/protobuf",
      METAMCP_DATABRICKS_TOOLS: "off",
      METAMCP_DATABRICKS_APP_IDENTITY: "everyone",
    };
    const { rendered } = render(settings);
    const env: { name: string; value?: string }[] = parse(rendered.appYaml).env;
    const given = Object.fromEntries(env.filter((e) => e.name in settings).map((e) => [e.name, e.value]));
    expect(given).toEqual(settings);
    // What app.yaml carries is what the app accepts at start.
    expect(readAppSettings(given).problems).toEqual([]);
    // None set: none written (the runtime's defaults apply).
    const plain: { name: string }[] = parse(render({}).rendered.appYaml).env;
    expect(plain.map((e) => e.name).filter((n) => n in settings)).toEqual([]);
    // Refused as the app would refuse them, before anything is deployed.
    const bad = {
      METAMCP_STDIO_SERVERS: "admins",
      METAMCP_SERVER_ENV_ALLOW: "BETTER_AUTH_SECRET",
      METAMCP_SESSION_IDLE_MINUTES: "0",
      METAMCP_TRUSTED_PROXY_ADDRESSES: "localhost",
      METAMCP_DEFAULT_ENDPOINT: "a b",
      METAMCP_AUDIT: "yes",
      METAMCP_AUDIT_ARGUMENTS: "all",
      METAMCP_AUDIT_DAYS: "0",
      METAMCP_TELEMETRY: "on",
      METAMCP_TELEMETRY_PRINCIPAL: "yes",
      METAMCP_TELEMETRY_ENDPOINT: "localhost:4318",
      METAMCP_TELEMETRY_PROTOCOL: "http",
      METAMCP_DATABRICKS_APP_IDENTITY: "admins",
    };
    let error: { exitCode?: number; message?: string } = {};
    try {
      render(bad);
    } catch (err) {
      error = err as typeof error;
    }
    expect(error.exitCode).toBe(2);
    const problems = readAppSettings(bad).problems;
    expect(problems).toHaveLength(Object.keys(bad).length);
    for (const problem of problems) {
      const words = problem.replace(/^[A-Z_]+=".*?" is not valid: /, "");
      expect(error.message).toContain(words);
    }
    expect(error.message).toContain(
      'METAMCP_STDIO_SERVERS="admins" (from env) is not valid: one of managers, everyone, off',
    );
    expect(error.message).toContain("names the app's own secrets");
    expect(error.message).toContain("whole days to keep audit rows");
    expect(error.message).toContain(
      'METAMCP_DATABRICKS_APP_IDENTITY="admins" (from env) is not valid: one of managers, everyone, off',
    );
    expect(error.message).toContain("an http:// or https:// URL of an OTLP collector");
  });

  test("METAMCP_TELEMETRY_TABLES: the app's telemetry_export_destinations, three tables named as the workspace names them; unset: none, and a stale one removed", () => {
    const app = (env: Record<string, string>, base?: string | null) =>
      parse(render(env, "dev", { base: base ?? null }).rendered.databricksYml).resources.apps.metamcp;
    const on = render({ METAMCP_TELEMETRY_TABLES: "main.observability.metamcp", METAMCP_TELEMETRY: "otlp" });
    expect(parse(on.rendered.databricksYml).resources.apps.metamcp.telemetry_export_destinations).toEqual([
      {
        unity_catalog: {
          traces_table: "main.observability.metamcp_otel_spans",
          logs_table: "main.observability.metamcp_otel_logs",
          metrics_table: "main.observability.metamcp_otel_metrics",
        },
      },
    ]);
    expect(on.rendered.warnings).toEqual([]);
    expect(
      app({ METAMCP_TELEMETRY_TABLES: "main.obs" }).telemetry_export_destinations[0].unity_catalog
        .traces_table,
    ).toBe("main.obs.otel_spans");
    expect(app({}).telemetry_export_destinations).toBeUndefined();
    // Ours: a render without the setting takes it out of the file it lays its keys into.
    expect(app({}, on.rendered.databricksYml).telemetry_export_destinations).toBeUndefined();
    // The export without our spans is allowed (the platform's own logs), and said.
    expect(render({ METAMCP_TELEMETRY_TABLES: "main.obs" }).rendered.warnings.join("\n")).toMatch(
      /METAMCP_TELEMETRY_TABLES .* set METAMCP_TELEMETRY=otlp/,
    );
    expect(() => render({ METAMCP_TELEMETRY_TABLES: "main" })).toThrow(/METAMCP_TELEMETRY_TABLES/);
    expect(() => render({ METAMCP_TELEMETRY_TABLES: "main.obs.a.b" })).toThrow(/<catalog>.<schema>/);
    // The telemetry settings reach app.yaml; a workstation's own OTEL_* never do (they are the platform's there).
    const withShellOtel = render({
      METAMCP_TELEMETRY_TABLES: "main.obs",
      METAMCP_TELEMETRY: "otlp",
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4318",
    });
    const env: { name: string; value?: string }[] = parse(withShellOtel.rendered.appYaml).env;
    expect(env).toContainEqual({ name: "METAMCP_TELEMETRY", value: "otlp" });
    expect(env.map((e) => e.name).filter((n) => n.startsWith("OTEL_"))).toEqual([]);
  });

  test("METAMCP_EMAIL_SIGNUP reaches the app only when it is not the runtime's default (off)", () => {
    const on: Yml = parse(render({ METAMCP_EMAIL_SIGNUP: "on" }).rendered.appYaml);
    expect(on.env).toContainEqual({ name: "METAMCP_EMAIL_SIGNUP", value: "on" });
    const off: Yml = parse(render({ METAMCP_EMAIL_SIGNUP: "off" }).rendered.appYaml);
    expect(off.env.find((e: { name: string }) => e.name === "METAMCP_EMAIL_SIGNUP")).toBeUndefined();
    expect(() => render({ METAMCP_EMAIL_SIGNUP: "maybe" })).toThrow(/METAMCP_EMAIL_SIGNUP/);
  });

  test("provisioned: the instance name from config (never guessed from PGHOST) and the custom schema", () => {
    const doc: Yml = parse(
      render({ LAKEBASE_KIND: "provisioned", METAMCP_DB_SCHEMA: "gateway" }, "prod").rendered.appYaml,
    );
    expect(doc.env).toContainEqual({ name: "LAKEBASE_INSTANCE_NAME", value: "metamcp-db" });
    expect(doc.env).toContainEqual({ name: "METAMCP_DB_SCHEMA", value: "gateway" });
    expect(doc.env.find((e: { name: string }) => e.name === "LAKEBASE_ENDPOINT")).toBeUndefined();
  });

  test("refuses a placeholder or a literal auth secret", () => {
    expect(() => checkAppYaml("env:\n  - name: X\n    value: ${BETTER_AUTH_SECRET}\n")).toThrow(
      /placeholder/,
    );
    // Any unexpanded reference or stand-in, named where it is (the platform expands nothing).
    expect(() => checkAppYaml("env:\n  - name: X\n    value: $HOME/x\n")).toThrow(
      /unresolved placeholder \("\$HOME\/x" at env\[0\]\.value\)/,
    );
    expect(() =>
      checkAppYaml("command: [node, start.mjs]\nenv:\n  - name: X\n    value: changeme\n"),
    ).toThrow(/unresolved placeholder \("changeme" at env\[0\]\.value\)/);
    expect(() => checkAppYaml("env:\n  - name: BETTER_AUTH_SECRET\n    value: abc\n")).toThrow(/valueFrom/);
  });

  test("refuses any secret the process knows (a repository token read from the config), exit 2", () => {
    const token = "ghp_renderTestToken0123456789";
    // Rendering loads the config, which reads the token and registers it; the rendered file carries none.
    const { config, rendered } = render({
      METAMCP_REPO_URL: `https://someone:${token}@github.com/acme/metamcp.git`,
    });
    // The config keeps the URL without the token for display; the token itself is a known secret now.
    expect(config.values.METAMCP_REPO_URL?.value).toBe("https://github.com/acme/metamcp.git");
    const yaml = `command: [node, runtime/start.mjs]\nenv:\n  - name: UPSTREAM_TOKEN\n    value: ${token}\n`;
    let err: unknown;
    try {
      checkAppYaml(yaml);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: "secret_in_app_yaml", exitCode: 2 });
    expect((err as Error).message).not.toContain(token);
    expect(rendered.appYaml).not.toContain(token);
  });
});

describe("render command", () => {
  test("--out writes exactly the files bundle-deploy uses (golden), for review and CI diffs", async () => {
    const project = tempDir();
    const out = path.join(project, "review");
    const a = await runCli(["render", "--out", out], { cwd: project, env: { DEV_USER: "someone" } });
    expect(a.exitCode).toBe(0);
    expect(a.stdout).toContain(path.join(out, "databricks.yml"));
    const yml = readFileSync(path.join(out, "databricks.yml"), "utf8");
    expectGolden("render-dev-databricks.yml", yml);
    expectGolden("render-dev-app.yaml", readFileSync(path.join(out, "app.yaml"), "utf8"));
    // Without --out, into the bundle root beside the app tree (needs the tree).
    const missing = await runCli(["render"], { cwd: project, env: { DEV_USER: "someone" } });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/no app tree in .*build\/app.*\n.*make build/);
    const { mkdirSync } = await import("node:fs");
    mkdirSync(path.join(project, "build/app"), { recursive: true });
    const b = await runCli(["render", "--json"], { cwd: project, env: { DEV_USER: "someone" } });
    expect(b.exitCode).toBe(0);
    expect(JSON.parse(b.stdout).databricksYml).toBe(path.join(project, "build/databricks.yml"));
    expect(readFileSync(path.join(project, "build/databricks.yml"), "utf8")).toBe(yml);
  });
});
