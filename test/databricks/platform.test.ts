// biome-ignore-all lint/suspicious/noTemplateCurlyInString: bundle interpolations are literal text in these fixtures
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { afterEach, describe, expect, test } from "vitest";
import { AppPlatformClient as RuntimeWorkspaceClient } from "../../src/runtime/platform-client.js";
import { type DatabricksWorld, startDatabricksWorld } from "../support/databricks-world.js";
import { tempDir } from "../support/tmp.js";

/**
 * The emulator and the CLI double refuse what the platform refuses (test/databricks/fixtures/
 * platform-cases.md), so a bundle or an order the real workspace would refuse fails here too.
 */
let world: DatabricksWorld | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

async function newWorld(scenario = {}): Promise<DatabricksWorld> {
  world = await startDatabricksWorld(tempDir(), scenario);
  return world;
}

const PREVIOUS_BUNDLE = fileURLToPath(new URL("./fixtures/previous-databricks.yml", import.meta.url));

/** The `databricks` the world puts on PATH, run in the bundle root as a user would. */
function databricks(w: DatabricksWorld, args: string[], env: Record<string, string> = {}) {
  return execa(path.join(w.double.binDir, "databricks"), args, {
    cwd: path.join(w.project, "build"),
    env: { ...w.env(), ...env },
    reject: false,
  });
}

function errorCode(stdout: string): string | undefined {
  return (JSON.parse(stdout) as { error?: { code?: string } }).error?.code;
}

describe("the bundle we rendered before this change is refused, as a real workspace refuses it", () => {
  test("terraform engine: lifecycle.started fails bundle deploy (validate passes)", async () => {
    const w = await newWorld();
    mkdirSync(path.join(w.project, "build"), { recursive: true });
    copyFileSync(PREVIOUS_BUNDLE, path.join(w.project, "build/databricks.yml"));
    writeFileSync(path.join(w.project, "build/app/app.yaml"), "command: [node, runtime/start.mjs]\n");
    const env = { DATABRICKS_BUNDLE_ENGINE: "terraform" };
    expect((await databricks(w, ["bundle", "validate"], env)).exitCode).toBe(0);
    const r = await databricks(w, ["bundle", "deploy"], env);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toMatch(
      /^Error: lifecycle\.started is only supported in direct deployment mode\n {2}in databricks\.yml:\d+:18/,
    );
    expect(w.emulator.apps.size).toBe(0);
  });

  test("direct engine: the app is refused for its database path (an id that cannot exist), even with the secret written by hand", async () => {
    const w = await newWorld();
    mkdirSync(path.join(w.project, "build"), { recursive: true });
    copyFileSync(PREVIOUS_BUNDLE, path.join(w.project, "build/databricks.yml"));
    writeFileSync(path.join(w.project, "build/app/app.yaml"), "command: [node, runtime/start.mjs]\n");
    const first = await databricks(w, ["bundle", "deploy"]);
    expect(first.exitCode).toBe(1);
    expect(first.stderr).toContain(
      "cannot create resources.apps.metamcp: Database projects/metamcp-dev-db/branches/production/databases/databricks_postgres of app resource postgres does not exist.",
    );
    expect(w.emulator.apps.size).toBe(0);
    // Even with the secret written by hand (the old code wrote it only after `bundle deploy`):
    // the database path still names no database.
    w.emulator.secrets.get("metamcp-dev-secrets")?.set("better-auth-secret", "x".repeat(40));
    const second = await databricks(w, ["bundle", "deploy"]);
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toContain("databases/databricks_postgres of app resource postgres does not exist");
  });

  test("the secret key must exist when the app is created (the old order wrote it after bundle deploy)", async () => {
    const w = await newWorld();
    mkdirSync(path.join(w.project, "build"), { recursive: true });
    // The previous bundle with a valid database path: only the secret order is wrong now.
    const text = readFileSync(PREVIOUS_BUNDLE, "utf8").replace(
      "databases/${var.lakebase_database}",
      "databases/databricks-postgres",
    );
    writeFileSync(path.join(w.project, "build/databricks.yml"), text);
    writeFileSync(path.join(w.project, "build/app/app.yaml"), "command: [node, runtime/start.mjs]\n");
    const r = await databricks(w, ["bundle", "deploy"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      "cannot create resources.apps.metamcp: Secret key better-auth-secret in scope metamcp-dev-secrets of app resource better-auth-secret does not exist.",
    );
  });
});

describe("the platform's own rules", () => {
  test("a database id must match the API's pattern (400), whatever the PostgreSQL name", async () => {
    const w = await newWorld();
    mkdirSync(path.join(w.project, "build"), { recursive: true });
    writeFileSync(
      path.join(w.project, "build/databricks.yml"),
      [
        "bundle: {name: bad-id, engine: direct}",
        "sync: {paths: []}",
        "resources:",
        "  postgres_projects: {p: {project_id: test-pg-proj}}",
        "  postgres_roles: {owner: {parent: '${resources.postgres_projects.p.id}/branches/production', role_id: app-owner, postgres_role: app_owner}}",
        "  postgres_databases:",
        "    d: {parent: '${resources.postgres_projects.p.id}/branches/production', database_id: Invalid_DB_ID, postgres_database: app_db, role: '${resources.postgres_roles.owner.id}'}",
        "",
      ].join("\n"),
    );
    const r = await databricks(w, ["bundle", "deploy"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      "Error: cannot create resources.postgres_databases.d: Field database_id must match pattern ^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$, got 'Invalid_DB_ID'. (400 INVALID_PARAMETER_VALUE)",
    );
    // Our config refuses such an id before anything is deployed.
    const ours = await w.run(["render", "--out", tempDir(), "--json"], {
      LAKEBASE_DATABASE_ID: "Invalid_DB_ID",
    });
    expect(ours.exitCode).toBe(2);
    expect(ours.stderr).toMatch(
      /LAKEBASE_DATABASE_ID="Invalid_DB_ID" \(from env\) must be a Lakebase resource id/,
    );
  });

  test("the bundle states its CLI floor; an older CLI refuses it", async () => {
    const w = await newWorld({ version: "1.3.0" });
    expect((await w.run(["render"])).exitCode).toBe(0);
    const r = await databricks(w, ["bundle", "deploy"]);
    expect(r.exitCode).toBe(1);
    expect(r.stderr).toContain(
      "Databricks CLI version constraint not satisfied. Required: >= 1.4.0, current: 1.3.0",
    );
  });

  test("our bundle names the direct engine: DATABRICKS_BUNDLE_ENGINE=terraform in the environment does not matter", async () => {
    const w = await newWorld();
    const r = await w.run(["bundle-deploy"], { DATABRICKS_BUNDLE_ENGINE: "terraform" });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(w.emulator.apps.get("metamcp-dev-someone")?.activeId).toBeDefined();
  });

  test("a bundle with terraform state is told how to move to the direct engine before anything is deployed", async () => {
    const w = await newWorld({ terraformState: { dev: true } });
    const state = w.emulator.localPath(
      "/Workspace/Users/someone@example.com/.bundle/metamcp-databricks/dev/state/terraform.tfstate",
    );
    mkdirSync(path.dirname(state), { recursive: true });
    writeFileSync(state, "{}");
    const r = await w.run(["bundle-deploy", "--json"]);
    expect(r.exitCode).toBe(4);
    expect(errorCode(r.stdout)).toBe("terraform_state");
    expect(r.stderr).toMatch(/was deployed with the terraform engine .*terraform\.tfstate/);
    expect(r.stderr).toMatch(
      /→ move it to the direct engine once, .*`databricks bundle deployment migrate --target dev --profile DEFAULT`/,
    );
    expect(w.double.commands().filter((a) => a[1] === "deploy")).toEqual([]);
    // What the CLI itself would do with that state: deploy on terraform, and fail.
    const cli = await databricks(w, ["bundle", "deploy", "--target", "dev"]);
    expect(cli.stderr).toContain("lifecycle.started is only supported in direct deployment mode");
  });

  test("an app's service principal may not read its own app: the runtime says what to do instead of a bare 403", async () => {
    const w = await newWorld();
    const app = w.emulator.addApp("metamcp-dev-someone");
    const client = new RuntimeWorkspaceClient(w.emulator.url, app.sp.clientId, app.sp.clientSecret);
    await expect(client.getApp("metamcp-dev-someone")).rejects.toMatchObject({
      code: "app_url_unknown",
      message: expect.stringMatching(
        /app\.yaml sets no METAMCP_APP_URL and the app's service principal may not read app metamcp-dev-someone \(app metamcp-dev-someone: HTTP 403 PERMISSION_DENIED/,
      ),
    });
    w.emulator.spMayReadOwnApp = true;
    await expect(client.getApp("metamcp-dev-someone")).resolves.toMatchObject({
      name: "metamcp-dev-someone",
    });
  });
});

describe("Lakebase: provisioned is attach-only and legacy; an attached project is checked", () => {
  test("provisioned: creating is refused by config; attaching checks the instance and says legacy", async () => {
    const w = await newWorld();
    const create = await w.run(["doctor", "--json"], {
      LAKEBASE_KIND: "provisioned",
      LAKEBASE_CREATE: "true",
    });
    expect(create.exitCode).toBe(4);
    expect(create.stdout).toMatch(/new provisioned \(legacy\) instances cannot be created since 2026-03-12/);
    const missing = await w.run(["doctor"], { LAKEBASE_KIND: "provisioned" });
    expect(missing.exitCode).toBe(4);
    expect(missing.stdout).toMatch(
      /✖ lakebase +Lakebase instance metamcp-dev-someone-db does not exist: provisioned instances are attached, never created \(legacy\)/,
    );
    w.emulator.instances.add("metamcp-dev-someone-db");
    const ok = await w.run(["doctor"], { LAKEBASE_KIND: "provisioned" });
    expect(ok.exitCode, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(
      /✔ lakebase +provisioned instance metamcp-dev-someone-db \(AVAILABLE\), attached; provisioned is legacy/,
    );
  });

  test("attached autoscaling project: CAN MANAGE needed; a wrong database id is answered with the right one", async () => {
    const w = await newWorld();
    w.emulator.projects.set("shared-db", {
      projectId: "shared-db",
      branches: new Map([
        [
          "production",
          {
            roles: new Map(),
            databases: new Map([
              ["db-7f3a", { databaseId: "db-7f3a", postgresDatabase: "databricks_postgres", role: "" }],
            ]),
            endpoints: new Set(["primary"]),
          },
        ],
      ]),
    });
    const env = { LAKEBASE_CREATE: "false", LAKEBASE_PROJECT: "shared-db" };
    const wrongId = await w.run(["doctor"], env);
    expect(wrongId.exitCode).toBe(4);
    expect(wrongId.stdout).toMatch(
      /✖ lakebase +projects\/shared-db\/branches\/production has no database with id databricks-postgres; PostgreSQL database databricks_postgres has id db-7f3a\n {2}→ set LAKEBASE_DATABASE_ID=db-7f3a/,
    );
    const ok = await w.run(["doctor"], { ...env, LAKEBASE_DATABASE_ID: "db-7f3a" });
    expect(ok.exitCode, ok.stdout).toBe(0);
    w.emulator.unmanageableProjects.add("shared-db");
    const noManage = await w.run(["doctor"], { ...env, LAKEBASE_DATABASE_ID: "db-7f3a" });
    expect(noManage.exitCode).toBe(4);
    expect(noManage.stdout).toMatch(/✖ lakebase +you lack CAN MANAGE on Lakebase project shared-db/);
    const gone = await w.run(["doctor"], { ...env, LAKEBASE_PROJECT: "nope-db" });
    expect(gone.stdout).toMatch(/✖ lakebase +Lakebase project nope-db does not exist/);
  });
});

describe("preflights: what would fail half-way through bundle deploy is refused before anything changes", () => {
  /** Nothing of ours was made: no scope, no project, no app, no bundle command that changes anything. */
  function expectNothingCreated(w: DatabricksWorld, apps = 0, projects = 0, scopes = 0) {
    expect(w.emulator.apps.size).toBe(apps);
    expect(w.emulator.projects.size).toBe(projects);
    expect(w.emulator.secrets.size).toBe(scopes);
    expect(w.double.commands().filter((a) => a[1] === "deploy" || a[1] === "validate")).toEqual([]);
    const writes = w.emulator.workspace.requests.filter((q) => q.method !== "GET");
    expect(writes.map((q) => q.path).filter((p) => !p.startsWith("/oidc/"))).toEqual([]);
  }

  test("a taken app name: which one, who made it, what to do (another name, or bind it); ours after our own deploy", async () => {
    const w = await newWorld();
    w.emulator.addApp("metamcp-dev-someone").creator = "other@example.com";
    const doctor = await w.run(["doctor"]);
    expect(doctor.exitCode).toBe(4);
    expect(doctor.stdout).toContain(
      "✖ taken-names     app metamcp-dev-someone already exists (created by other@example.com) and is not in this bundle's deployment state for target dev\n  → choose another name (APP_BASE_NAME, or APP_NAME), or adopt the app: `databricks bundle deployment bind metamcp metamcp-dev-someone --target dev --profile DEFAULT`",
    );
    const r = await w.run(["bundle-deploy"]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(
      /preflight failed:\n[\s\S]*✖ taken-names +app metamcp-dev-someone already exists/,
    );
    expectNothingCreated(w, 1);

    // Our own app (in this bundle's deployment state) is no obstacle.
    w.emulator.apps.clear();
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    const again = await w.run(["doctor"]);
    expect(again.exitCode, again.stdout).toBe(0);
    expect(again.stdout).toMatch(
      /✔ taken-names +free or ours: app metamcp-dev-someone \(ours\), project metamcp-dev-someone-db \(ours\), secret scope metamcp-dev-someone-secrets \(ours\)/,
    );
  });

  test("a taken Lakebase project and a secret scope we did not make: both named, each with what to do; SECRET_SCOPE adopts the scope", async () => {
    const w = await newWorld();
    w.emulator.projects.set("metamcp-dev-someone-db", {
      projectId: "metamcp-dev-someone-db",
      branches: new Map(),
    } as never);
    w.emulator.secrets.set("metamcp-dev-someone-secrets", new Map([["theirs", "x"]]));
    const r = await w.run(["bundle-deploy"]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(
      "Lakebase project metamcp-dev-someone-db already exists and is not in this bundle's deployment state for target dev; secret scope metamcp-dev-someone-secrets already exists and was not created by bundle-deploy",
    );
    expect(r.stderr).toContain(
      "→ choose another LAKEBASE_PROJECT (or APP_BASE_NAME); or use it as it is: LAKEBASE_CREATE=false LAKEBASE_PROJECT=metamcp-dev-someone-db; or adopt it: `databricks bundle deployment bind metamcp_db metamcp-dev-someone-db --target dev --profile DEFAULT`",
    );
    expect(r.stderr).toContain(
      "→ choose another APP_BASE_NAME (or SECRET_SCOPE); or adopt it: set SECRET_SCOPE=metamcp-dev-someone-secrets",
    );
    expectNothingCreated(w, 0, 1, 1);
    expect(w.emulator.secrets.get("metamcp-dev-someone-secrets")?.size).toBe(1);

    w.emulator.projects.clear();
    const adopted = await w.run(["doctor"], { SECRET_SCOPE: "metamcp-dev-someone-secrets" });
    expect(adopted.exitCode, adopted.stdout).toBe(0);
    expect(adopted.stdout).not.toContain("secret scope metamcp-dev-someone-secrets already exists");
    expect(adopted.stdout).toContain("secret scope metamcp-dev-someone-secrets (yours, used as it is)");
  });

  test("Lakebase Autoscaling not offered in the workspace: one read call, advice, nothing created", async () => {
    const w = await newWorld();
    w.emulator.autoscalingAvailable = false;
    const doctor = await w.run(["doctor"]);
    expect(doctor.exitCode).toBe(4);
    expect(doctor.stdout).toContain(
      "✖ lakebase        Lakebase Autoscaling is not offered in this workspace (GET /api/2.0/postgres/projects answered HTTP 404 ENDPOINT_NOT_FOUND): it is available in some clouds and regions only\n  → deploy to a workspace in a region that offers Lakebase Autoscaling",
    );
    expect(doctor.stdout).toContain(
      "or attach an existing provisioned (legacy) instance: LAKEBASE_KIND=provisioned LAKEBASE_INSTANCE_NAME=<instance>",
    );
    const r = await w.run(["bundle-deploy"]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(/preflight failed:[\s\S]*Lakebase Autoscaling is not offered in this workspace/);
    expectNothingCreated(w);
    // Attaching a project does not mistake "not offered" for "no such project".
    const attach = await w.run(["doctor"], { LAKEBASE_CREATE: "false", LAKEBASE_PROJECT: "shared-db" });
    expect(attach.stdout).toContain("Lakebase Autoscaling is not offered in this workspace");
  });

  test("Entra ID (azure-cli, azure-client-secret, azure-msi) and PAT profiles are refused up front, with the workspace OAuth login to run", async () => {
    const w = await newWorld();
    const cfg = path.join(w.home, ".databrickscfg");
    const profiles = {
      "entra-cli": ["auth_type = azure-cli"],
      "entra-secret": [
        "azure_client_id = 11111111-2222-3333-4444-555555555555",
        "azure_client_secret = not-a-real-entra-secret",
        "azure_tenant_id = 66666666-7777-8888-9999-000000000000",
      ],
      "entra-msi": ["auth_type = azure-msi", "azure_use_msi = true"],
    };
    for (const [name, lines] of Object.entries(profiles))
      writeFileSync(
        cfg,
        `${readFileSync(cfg, "utf8")}\n[${name}]\nhost = ${w.emulator.url}\n${lines.join("\n")}\n`,
        {
          flag: "w",
        },
      );
    const expected: Record<string, string> = {
      "entra-cli":
        "an Azure CLI (Entra ID) login, which the Apps proxy does not accept (auth_type azure-cli)",
      "entra-secret":
        "an Entra ID service principal secret, which the Apps proxy does not accept (auth_type azure-client-secret)",
      "entra-msi":
        "an Azure managed identity (Entra ID), which the Apps proxy does not accept (auth_type azure-msi)",
      pat: "a personal access token, which the Apps proxy does not accept (auth_type pat)",
    };
    for (const [profile, what] of Object.entries(expected)) {
      // DEV_USER: no user lookup, which would sign in through Entra first.
      const r = await w.run(["bundle-deploy", "--profile", profile], { DEV_USER: "someone" });
      expect(r.exitCode, `${profile}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`✖ profile         profile ${profile} authenticates with ${what}`);
      expect(r.stderr).toContain(
        `→ log in with workspace OAuth: \`databricks auth login --host ${w.emulator.url} --profile ${profile}\``,
      );
    }
    expectNothingCreated(w);
  });

  test("a Databricks CLI older than the floor (1.4.0) is refused by bundle-deploy before anything changes (exit 2)", async () => {
    const w = await newWorld({ version: "1.3.0" });
    const r = await w.run(["bundle-deploy"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(
      /✖ databricks-cli +Databricks CLI 1\.3\.0 is too old: 1\.4\.0 or later is needed .*\n {2}→ install or upgrade it/,
    );
    expectNothingCreated(w);
  });
});

describe("the deployed databricks.yml is the user's to extend", () => {
  test("a key the user adds (budget_policy_id on the app, a target of their own, a comment) survives render and bundle-deploy, and is deployed", async () => {
    const w = await newWorld();
    const first = await w.run(["bundle-deploy"]);
    expect(first.exitCode, first.stderr).toBe(0);
    const file = path.join(w.project, "build/databricks.yml");
    const edited = readFileSync(file, "utf8")
      .replace(
        "      source_code_path: ./app\n",
        "      source_code_path: ./app\n      # billed to the platform team\n      budget_policy_id: budget-1234\n",
      )
      .replace("targets:\n", "targets:\n  staging:\n    mode: production\n");
    writeFileSync(file, edited);
    const render = await w.run(["render"]);
    expect(render.exitCode, render.stderr).toBe(0);
    expect(readFileSync(file, "utf8")).toBe(edited);
    // render --out shows exactly the file that deploys.
    const out = tempDir();
    expect((await w.run(["render", "--out", out])).exitCode).toBe(0);
    expect(readFileSync(path.join(out, "databricks.yml"), "utf8")).toBe(edited);

    const again = await w.run(["bundle-deploy", "--json"]);
    expect(again.exitCode, again.stderr).toBe(0);
    const after = readFileSync(file, "utf8");
    expect(after).toContain("      # billed to the platform team\n      budget_policy_id: budget-1234\n");
    expect(after).toContain("  staging:\n    mode: production\n");
    expect(w.emulator.apps.get("metamcp-dev-someone")?.budgetPolicyId).toBe("budget-1234");
    // A config change still reaches the file and the app, with the user's key kept.
    const resized = await w.run(["bundle-deploy"], { APP_COMPUTE_SIZE: "LARGE" });
    expect(resized.exitCode, resized.stderr).toBe(0);
    expect(readFileSync(file, "utf8")).toContain("budget_policy_id: budget-1234");
    expect(w.emulator.apps.get("metamcp-dev-someone")).toMatchObject({
      computeSize: "LARGE",
      budgetPolicyId: "budget-1234",
    });
  });

  test("a databricks.yml broken by hand is named, with what to do, before anything is deployed", async () => {
    const w = await newWorld();
    mkdirSync(path.join(w.project, "build"), { recursive: true });
    writeFileSync(path.join(w.project, "build/databricks.yml"), "resources: [unclosed\n");
    const doctor = await w.run(["doctor"]);
    expect(doctor.exitCode).toBe(4);
    expect(doctor.stdout).toMatch(
      /✖ taken-names +.*build\/databricks\.yml is not valid YAML: .*\n {2}→ fix it, or move it away and run render again/,
    );
    const r = await w.run(["bundle-deploy"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/databricks\.yml is not valid YAML/);
    expect(w.emulator.apps.size).toBe(0);
    expect(w.emulator.secrets.size).toBe(0);
  });
});
