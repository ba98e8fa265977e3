// biome-ignore-all lint/suspicious/noTemplateCurlyInString: bundle interpolations are literal text in these expectations
import { readFileSync } from "node:fs";
import path from "node:path";
import { Ajv } from "ajv";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import type { Target } from "../../src/config/variables.js";
import { checkAppYaml, renderBundle } from "../../src/databricks/render.js";
import { PROJECT_ROOT, runCli } from "../support/cli.js";
import { expectGolden } from "../support/golden.js";
import { tempDir } from "../support/tmp.js";

// The Databricks CLI's own JSON schema for databricks.yml (../shared/databricks, never copied here).
const SCHEMA_FILE = path.resolve(PROJECT_ROOT, "../shared/databricks/bundle-jsonschema.json");
const ajv = new Ajv({ strict: false, allErrors: true });
const validateBundle = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, "utf8")));

function render(env: Record<string, string>, target: Target = "dev") {
  const load = (t: Target) =>
    loadConfig({ cwd: "/work/project", env: { ...env, TARGET: t }, dotenvPath: "/nonexistent" });
  const config = load(target);
  return { config, rendered: renderBundle(config, load) };
}

function schemaErrors(doc: unknown): string {
  return validateBundle(doc) ? "" : ajv.errorsText(validateBundle.errors, { separator: "\n" });
}

// biome-ignore lint/suspicious/noExplicitAny: walking parsed YAML
type Yml = any;

describe("databricks.yml", () => {
  const cases: { name: string; env: Record<string, string>; target: Target }[] = [
    { name: "autoscaling dev", env: {}, target: "dev" },
    { name: "autoscaling prod", env: {}, target: "prod" },
    { name: "provisioned dev", env: { LAKEBASE_KIND: "provisioned" }, target: "dev" },
    { name: "provisioned prod", env: { LAKEBASE_KIND: "provisioned" }, target: "prod" },
    {
      name: "existing autoscaling",
      env: { LAKEBASE_CREATE: "false", LAKEBASE_PROJECT: "shared-db" },
      target: "dev",
    },
    {
      name: "existing provisioned",
      env: { LAKEBASE_KIND: "provisioned", LAKEBASE_CREATE: "false" },
      target: "prod",
    },
  ];
  test.each(cases)("$name validates against the Databricks CLI's bundle schema", ({ env, target }) => {
    const { rendered } = render(env, target);
    expect(schemaErrors(parse(rendered.databricksYml))).toBe("");
  });

  test("the schema check is real: a wrong key and a wrong permission are rejected", () => {
    const doc: Yml = parse(render({}).rendered.databricksYml);
    doc.resources.apps.metamcp.resources[0].postgres.permission = "CAN_USE";
    doc.resources.apps.metamcp.startd = true;
    const errors = schemaErrors(doc);
    expect(errors).toMatch(/additional properties/);
    expect(errors).toMatch(/allowed values/);
  });

  test("autoscaling: a postgres project, the app reaches it through a postgres resource; started; secret", () => {
    const { rendered } = render({});
    const doc: Yml = parse(rendered.databricksYml);
    expect(doc.resources.postgres_projects.metamcp_db.project_id).toBe("${var.lakebase_project}");
    const app = doc.resources.apps.metamcp;
    expect(app.lifecycle).toEqual({ started: true });
    expect(app.source_code_path).toBe("./app");
    expect(app.resources).toEqual([
      {
        name: "postgres",
        postgres: {
          branch:
            "projects/${resources.postgres_projects.metamcp_db.project_id}/branches/${var.lakebase_branch}",
          database:
            "projects/${resources.postgres_projects.metamcp_db.project_id}/branches/${var.lakebase_branch}/databases/${var.lakebase_database}",
          permission: "CAN_CONNECT_AND_CREATE",
        },
      },
      {
        name: "better-auth-secret",
        secret: {
          scope: "${resources.secret_scopes.metamcp_secrets.name}",
          key: "${var.secret_key}",
          permission: "READ",
        },
      },
    ]);
    expect(doc.resources.secret_scopes.metamcp_secrets).toEqual({
      name: "${var.secret_scope}",
      backend_type: "DATABRICKS",
    });
    expect(doc.resources.database_instances).toBeUndefined();
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
    expect(doc.targets.prod.resources.secret_scopes.metamcp_secrets.lifecycle.prevent_destroy).toBe(true);
    // Every variable a target sets is declared.
    for (const t of ["dev", "prod"])
      for (const k of Object.keys(doc.targets[t].variables)) expect(doc.variables[k]).toBeDefined();
  });

  test("provisioned: a database instance and a database resource; existing: no database resource at all", () => {
    const prov: Yml = parse(render({ LAKEBASE_KIND: "provisioned" }).rendered.databricksYml);
    expect(prov.resources.database_instances.metamcp_db).toEqual({
      name: "${var.lakebase_instance}",
      capacity: "CU_1",
    });
    expect(prov.resources.apps.metamcp.resources[0]).toEqual({
      name: "database",
      database: {
        instance_name: "${resources.database_instances.metamcp_db.name}",
        database_name: "${var.lakebase_database}",
        permission: "CAN_CONNECT_AND_CREATE",
      },
    });
    const existing: Yml = parse(
      render({ LAKEBASE_CREATE: "false", LAKEBASE_PROJECT: "shared-db" }).rendered.databricksYml,
    );
    expect(existing.resources.postgres_projects).toBeUndefined();
    expect(existing.resources.apps.metamcp.resources[0].postgres.branch).toBe(
      "projects/${var.lakebase_project}/branches/${var.lakebase_branch}",
    );
    expect(existing.targets.dev.variables.lakebase_project).toBe("shared-db");
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
    // valueFrom names must be app resources of the bundle.
    const names = parse(rendered.databricksYml).resources.apps.metamcp.resources.map(
      (r: { name: string }) => r.name,
    );
    for (const e of doc.env) if (e.valueFrom) expect(names).toContain(e.valueFrom);
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
    const { config } = render({});
    expect(() => checkAppYaml("env:\n  - name: X\n    value: ${BETTER_AUTH_SECRET}\n", config)).toThrow(
      /placeholder/,
    );
    expect(() => checkAppYaml("env:\n  - name: BETTER_AUTH_SECRET\n    value: abc\n", config)).toThrow(
      /valueFrom/,
    );
  });
});

describe("render command", () => {
  test("--out writes exactly the files bundle-deploy uses (golden), for review and CI diffs", async () => {
    const project = tempDir();
    const out = path.join(project, "review");
    const a = await runCli(["render", "--out", out], { cwd: project });
    expect(a.exitCode).toBe(0);
    expect(a.stdout).toContain(path.join(out, "databricks.yml"));
    const yml = readFileSync(path.join(out, "databricks.yml"), "utf8");
    expectGolden("render-dev-databricks.yml", yml);
    expectGolden("render-dev-app.yaml", readFileSync(path.join(out, "app.yaml"), "utf8"));
    // Without --out, into the bundle root beside the app tree (needs the tree).
    const missing = await runCli(["render"], { cwd: project });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/no app tree in .*build\/app.*\n.*make build/);
    const { mkdirSync } = await import("node:fs");
    mkdirSync(path.join(project, "build/app"), { recursive: true });
    const b = await runCli(["render", "--json"], { cwd: project });
    expect(b.exitCode).toBe(0);
    expect(JSON.parse(b.stdout).databricksYml).toBe(path.join(project, "build/databricks.yml"));
    expect(readFileSync(path.join(project, "build/databricks.yml"), "utf8")).toBe(yml);
  });
});
