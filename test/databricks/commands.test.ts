import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, type TestContext, test as vitestTest } from "vitest";
import { CLI_BIN } from "../support/cli.js";
import { type DatabricksWorld, M2M, PAT, startDatabricksWorld } from "../support/databricks-world.js";

/**
 * Every case has its own world (workspace emulator, CLI double, HOME, project) on ports of its own and shares
 * nothing: they run concurrently, each world closed when its case ends.
 */
const test = (name: string, fn: (ctx: TestContext) => Promise<void>) =>
  // Concurrent cases share the CPU: each gets a generous deadline (the suite's 120 s is for one at a time).
  vitestTest.concurrent(name, fn, 300_000);

/**
 * A temp dir removed when THIS case ends (support/tmp.ts's tempDir hooks the current test, which concurrent
 * cases do not have: the context's hook is the one that knows its case).
 */
function tempDir(ctx: TestContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mmdb-"));
  ctx.onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function newWorld(ctx: TestContext, scenario = {}): Promise<DatabricksWorld> {
  const world = await startDatabricksWorld(tempDir(ctx), scenario);
  ctx.onTestFinished(() => world.close());
  return world;
}

const DEV_VARS = [
  "--var",
  "app_name=metamcp-dev-someone",
  "--var",
  "db_schema=metamcp_app",
  "--var",
  "lakebase_database=metamcp",
  "--var",
  "secret_scope=metamcp-dev-someone-secrets",
  "--var",
  "secret_key=better-auth-secret",
  "--var",
  "compute_size=MEDIUM",
  "--var",
  "lakebase_project=metamcp-dev-someone-db",
  "--var",
  "lakebase_branch=production",
  "--var",
  "lakebase_database_id=metamcp",
];

function errorCode(stdout: string): string | undefined {
  return (JSON.parse(stdout) as { error?: { code?: string } }).error?.code;
}

/** Every secret of the world must be absent from everything a command printed. */
function expectNoSecrets(w: DatabricksWorld, ...outputs: string[]): void {
  const secrets = [M2M.secret, PAT, ...[...w.emulator.secrets.values()].flatMap((m) => [...m.values()])];
  for (const out of outputs) for (const s of secrets) expect(out).not.toContain(s);
}

describe("doctor", () => {
  test("all checks pass with a working M2M profile: one line each", async (ctx) => {
    const w = await newWorld(ctx);
    const r = await w.run(["doctor"]);
    expect(r.exitCode).toBe(0);
    for (const name of ["git", "node", "databricks-cli", "profile", "workspace", "names", "lakebase"])
      expect(r.stdout).toMatch(new RegExp(`^✔ ${name} `, "m"));
    expect(r.stdout).toContain("Databricks CLI 1.13.0 (>= 1.4.0)");
    expect(r.stdout).toContain(
      "the bundle creates projects/metamcp-dev-someone-db with database projects/metamcp-dev-someone-db/branches/production/databases/metamcp (PostgreSQL metamcp)",
    );
    expect(r.stdout).toContain("signed in as someone@example.com");
    expectNoSecrets(w, r.stdout, r.stderr);
  });

  test("CLI missing, too old, not logged in: each check says what to do, exit non-zero", async (ctx) => {
    const w = await newWorld(ctx, { authTokenError: true });
    const missing = await w.run(["doctor"], { DATABRICKS_CLI: "/nonexistent/databricks" });
    expect(missing.exitCode).toBe(4);
    expect(missing.stdout).toMatch(
      /✖ databricks-cli .*was not found\n {2}→ install or upgrade it: https:\/\/docs.databricks.com/,
    );

    // 0.297.0 has lifecycle.started but not postgres_roles/postgres_databases (v1.4.0).
    w.double.update({ version: "0.297.0" });
    const old = await w.run(["doctor", "--json"]);
    expect(old.exitCode).toBe(4);
    const check = (
      JSON.parse(old.stdout) as { checks: { name: string; ok: boolean; detail: string }[] }
    ).checks.find((c) => c.name === "databricks-cli");
    expect(check).toMatchObject({ ok: false });
    expect(check?.detail).toMatch(/0\.297\.0 is too old: 1\.4\.0 or later/);

    w.double.update({ version: "1.13.0" });
    const u2m = await w.run(["doctor", "--profile", "u2m"]);
    expect(u2m.exitCode).toBe(4);
    expect(u2m.stdout).toMatch(/✖ profile .*\n {2}→ run `databricks auth login --profile u2m`/);
    expect(u2m.stdout).toMatch(/- workspace +not checked: no working profile/);
    const unknown = await w.run(["doctor", "--profile", "nosuch"]);
    expect(unknown.exitCode).toBe(4);
    expect(unknown.stdout).toMatch(
      /✖ profile +Databricks profile nosuch is not configured.*\n {2}→ run `databricks auth login --host <workspace-url> --profile nosuch`/,
    );
    const noFile = await w.run(["doctor"], { HOME: tempDir(ctx) });
    expect(noFile.exitCode).toBe(4);
    expect(noFile.stdout).toMatch(
      /✖ profile +Databricks profile DEFAULT is not configured: .*\.databrickscfg does not exist\n {2}→ run `databricks auth login --host <workspace-url> --profile DEFAULT`/,
    );
    // The SDK asked the CLI for the browser-login token of exactly that profile.
    expect(w.double.commands()).toContainEqual(["auth", "token", "--profile", "u2m"]);
  });

  test("dev and prod sharing one explicit APP_NAME fails the names check", async (ctx) => {
    const w = await newWorld(ctx);
    const r = await w.run(["doctor"], { APP_NAME: "shared-app" });
    expect(r.exitCode).toBe(4);
    expect(r.stdout).toMatch(
      /✖ names .*dev and prod would share app shared-app\n {2}→ unset APP_NAME and set APP_BASE_NAME/,
    );
  });

  test("an invalid name is a failed names check; the other checks still run", async (ctx) => {
    const w = await newWorld(ctx);
    const r = await w.run(["doctor", "--json"], { APP_NAME: "Bad_Name" });
    expect(r.exitCode).toBe(4);
    const checks = (JSON.parse(r.stdout) as { checks: { name: string; ok: boolean; detail: string }[] })
      .checks;
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ["git", true],
      ["node", true],
      ["databricks-cli", true],
      ["profile", true],
      ["workspace", true],
      ["names", false],
    ]);
    expect(checks.at(-1)?.detail).toMatch(/invalid configuration: APP_NAME="Bad_Name" \(from env\) must be/);
    const human = await w.run(["doctor"], { APP_NAME: "Bad_Name" });
    expect(human.stdout).toMatch(
      /✖ names +invalid configuration: .*\n {2}→ fix the flag, environment variable/,
    );
  });

  test("an unreachable workspace fails the workspace check, not the profile's", async (ctx) => {
    const w = await newWorld(ctx);
    await w.emulator.close();
    const r = await w.run(["doctor"]);
    expect(r.exitCode).toBe(4);
    expect(r.stdout).toMatch(/^- profile +not checked: the workspace did not answer$/m);
    expect(r.stdout).toMatch(
      /^✖ workspace +cannot reach the workspace of profile DEFAULT: .*\n {2}→ the workspace did not answer/m,
    );
  });
});

describe("bundle-deploy", () => {
  test("first deploy: secret first, app created stopped, its URL into app.yaml, then started with its code; the secret is made once and never shown", async (ctx) => {
    const w = await newWorld(ctx);
    const r = await w.run(["bundle-deploy"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const summary = [
      "bundle",
      "summary",
      "--target",
      "dev",
      ...DEV_VARS,
      "-o",
      "json",
      "--profile",
      "DEFAULT",
    ];
    const deploy = ["bundle", "deploy", "--target", "dev", ...DEV_VARS, "--profile", "DEFAULT"];
    const putSecret = (key: string) => [
      "secrets",
      "put-secret",
      "metamcp-dev-someone-secrets",
      key,
      "--profile",
      "DEFAULT",
    ];
    expect(w.double.commands()).toEqual([
      // The preflight (taken names) reads the deployment state before anything changes; then the scope's
      // marker and the auth secret: the CLI writes both, each value on its stdin.
      summary,
      putSecret("created-by-metamcp-databricks"),
      putSecret("better-auth-secret"),
      ["bundle", "validate", "--target", "dev", ...DEV_VARS, "--profile", "DEFAULT"],
      deploy,
      deploy,
    ]);
    for (const c of w.double.calls().filter((x) => x.argv[0] !== "version")) {
      expect(c.profileEnv).toBe("DEFAULT");
      if (c.argv[0] === "bundle") expect(c.cwd).toBe(path.join(w.project, "build"));
    }
    // The secret existed before the app that refers to it; the app was created stopped, then started.
    const calls = w.emulator.workspace.requests.map((q) => `${q.method} ${q.path}`);
    const put = calls.indexOf("POST /api/2.0/secrets/put");
    const create = calls.indexOf("POST /api/2.0/apps");
    expect(put).toBeGreaterThanOrEqual(0);
    expect(create).toBeGreaterThan(put);
    expect(calls.indexOf("POST /api/2.0/apps/metamcp-dev-someone/start")).toBeGreaterThan(create);
    expect(calls.filter((c) => c === "POST /api/2.0/apps/metamcp-dev-someone/deployments")).toHaveLength(1);
    // The files it deployed are the rendered ones: started, direct engine, the URL in app.yaml.
    const yml = readFileSync(path.join(w.project, "build/databricks.yml"), "utf8");
    expect(yml).toContain("lifecycle:\n        started: true");
    expect(yml).toContain("engine: direct");
    const appYaml = readFileSync(path.join(w.project, "build/app/app.yaml"), "utf8");
    expect(appYaml).toContain("valueFrom: better-auth-secret");
    expect(appYaml).toContain(`- name: METAMCP_APP_URL\n    value: ${w.emulator.appUrl}`);
    expect(r.stderr).toContain(
      "Uploading bundle files to /Workspace/Users/someone@example.com/.bundle/metamcp-databricks/dev/files",
    );
    const secret = w.emulator.secrets.get("metamcp-dev-someone-secrets")?.get("better-auth-secret");
    expect(secret).toMatch(/^[A-Za-z0-9_-]{64}$/);
    // Never on a command line (every process may read /proc/<pid>/cmdline): the CLI read it from stdin and
    // sent it as bytes_value.
    expect(JSON.stringify(w.double.calls())).not.toContain(String(secret));
    const written = w.emulator.workspace.requests.find(
      (q) => q.path === "/api/2.0/secrets/put" && (q.body as { key?: string }).key === "better-auth-secret",
    );
    expect(
      Buffer.from(
        String((written?.body as { bytes_value?: string } | undefined)?.bytes_value),
        "base64",
      ).toString(),
    ).toBe(secret);
    expect(r.stdout).toContain("BETTER_AUTH_SECRET: generated (not shown)");
    expect(r.stdout).toMatch(
      /code: deployed by bundle deploy \(deployment \w+ SUCCEEDED\)\nnext: make app-health TARGET=dev$/m,
    );
    expectNoSecrets(w, r.stdout, r.stderr, appYaml);

    // Later runs: one bundle deploy, the key kept, no code deployed when nothing about the app changed.
    w.double.clearCalls();
    const again = await w.run(["bundle-deploy", "--json"]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      secret: "kept",
      target: "dev",
      appName: "metamcp-dev-someone",
      firstDeploy: false,
      appUrl: w.emulator.appUrl,
    });
    expect(JSON.parse(again.stdout).codeDeployment).toBeUndefined();
    expect(w.double.commands().filter((a) => a[1] === "deploy")).toHaveLength(1);
    const human = await w.run(["bundle-deploy"]);
    expect(human.stdout).toMatch(/already present, kept in metamcp-dev-someone-secrets\n/);
    expect(human.stdout).toMatch(
      /code: not deployed .*\nnext: make app-deploy TARGET=dev \(ships the app tree\)$/m,
    );
    expect(w.emulator.secrets.get("metamcp-dev-someone-secrets")?.get("better-auth-secret")).toBe(secret);
    expect(w.emulator.apps.get("metamcp-dev-someone")!.deployments).toHaveLength(1);
  });

  test("prod gets prod's names", async (ctx) => {
    const w = await newWorld(ctx);
    const r = await w.run(["bundle-deploy", "--target", "prod"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const deploy = w.double.commands().find((a) => a[1] === "deploy");
    expect(deploy).toEqual(
      expect.arrayContaining(["--target", "prod", "app_name=metamcp", "secret_scope=metamcp-secrets"]),
    );
    expect(w.emulator.apps.has("metamcp")).toBe(true);
    expect(w.emulator.database("projects/metamcp-db/branches/production/databases/metamcp")).toMatchObject({
      postgresDatabase: "metamcp",
    });
  });

  test("a failing preflight deploys nothing; a failing deploy shows the CLI's error", async (ctx) => {
    const w = await newWorld(ctx);
    const missing = await w.run(["bundle-deploy"], { DATABRICKS_CLI: "/nonexistent/databricks" });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/preflight failed:\n✖ databricks-cli/);
    expect(w.double.commands()).toEqual([]);
    expect(w.emulator.secrets.size).toBe(0);

    w.double.update({ validateError: "variable app_name: value is not valid" });
    const invalid = await w.run(["bundle-deploy"]);
    expect(invalid.exitCode).toBe(4);
    expect(invalid.stderr).toMatch(
      /`databricks bundle validate --target dev .*` failed \(exit 1\):\nError: variable app_name: value is not valid/,
    );
    expect(w.double.commands().filter((a) => a[1] === "deploy")).toEqual([]);

    w.double.update({
      validateError: undefined,
      deployError: "cannot create apps.metamcp: App name is already taken",
    });
    const failed = await w.run(["bundle-deploy"]);
    expect(failed.exitCode).toBe(4);
    expect(failed.stderr).toMatch(
      /`databricks bundle deploy --target dev .*` failed \(exit 1\):\nError: cannot create apps.metamcp: App name is already taken/,
    );

    w.double.update({ deployError: undefined, bundleAuthError: true });
    const auth = await w.run(["bundle-deploy"]);
    expect(auth.exitCode).toBe(4);
    expect(auth.stderr).toMatch(
      /profile DEFAULT is not logged in[\s\S]*→ run `databricks auth login --profile DEFAULT`/,
    );
  });
});

describe("app-deploy", () => {
  const source = "/Workspace/Users/someone@example.com/.bundle/metamcp-databricks/dev/files/app";
  const deployments = (w: DatabricksWorld) =>
    w.emulator.workspace.requests.filter((q) => q.method === "POST" && q.path.endsWith("/deployments"));
  /** A new build of the app tree (what `make build` leaves). */
  const rebuild = (w: DatabricksWorld, text = String(Date.now())) =>
    writeFileSync(path.join(w.project, "build/app/runtime/start.mjs"), `// build ${text}\n`);

  test("fails fast without a bundle deployment, saying which command to run", async (ctx) => {
    const w = await newWorld(ctx);
    const noFile = await w.run(["app-deploy", "--poll", "0.1", "--json"]);
    expect(noFile.exitCode).toBe(4);
    expect(errorCode(noFile.stdout)).toBe("no_bundle_deployment");
    expect(noFile.stderr).toContain(
      "no bundle deployment for target dev: run `make bundle-deploy TARGET=dev`",
    );

    const r = await w.run(["render"]);
    expect(r.exitCode).toBe(0);
    const notDeployed = await w.run(["app-deploy", "--poll", "0.1"]);
    expect(notDeployed.exitCode).toBe(4);
    expect(notDeployed.stderr).toContain(
      "no bundle deployment for target dev: run `make bundle-deploy TARGET=dev`",
    );
    expect(deployments(w)).toEqual([]);
  });

  test("right after bundle-deploy the tree already runs: no second deployment; a new build is synced and deployed (SNAPSHOT), then runs", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    expect(deployments(w)).toHaveLength(1);
    w.double.clearCalls();
    const same = await w.run(["app-deploy", "--poll", "0.1"]);
    expect(same.exitCode, same.stderr).toBe(0);
    expect(same.stdout).toMatch(/^already running the current app tree: deployment \w+ SUCCEEDED/);
    expect(deployments(w)).toHaveLength(1);
    expect(w.double.commands()).toEqual([
      ["bundle", "summary", "--target", "dev", ...DEV_VARS, "-o", "json", "--profile", "DEFAULT"],
      ["apps", "get", "metamcp-dev-someone", "-o", "json", "--profile", "DEFAULT"],
    ]);

    rebuild(w);
    w.double.clearCalls();
    const r = await w.run(["app-deploy", "--poll", "0.1"]);
    expect(r.exitCode, r.stderr).toBe(0);
    // The bundle's summary, then the CLI uploads the new tree (bundle sync) and deploys it (bundle run);
    // `apps get` reads the app before, while (every --poll) and after.
    expect(w.double.commands().filter((a) => a[0] !== "apps")).toEqual([
      ["bundle", "summary", "--target", "dev", ...DEV_VARS, "-o", "json", "--profile", "DEFAULT"],
      ["bundle", "sync", "--target", "dev", ...DEV_VARS, "--profile", "DEFAULT"],
      ["bundle", "run", "metamcp", "--target", "dev", ...DEV_VARS, "--profile", "DEFAULT"],
    ]);
    for (const c of w.double.calls().filter((x) => x.argv[0] !== "version"))
      expect(c.profileEnv).toBe("DEFAULT");
    // What the CLI prints (bundle/run/app.go), relayed.
    expect(r.stderr).toMatch(
      /✓ Getting the status of the app metamcp-dev-someone\n[\s\S]*✓ App compute is in ACTIVE state\n[\s\S]*✓ App started successfully\n[\s\S]*You can access the app at https:\/\/127\.0\.0\.1:\d+/,
    );
    expect(r.stdout).toMatch(/^deployment \w+: SUCCEEDED/);
    expect(r.stdout).toContain("next: make app-health TARGET=dev");
    expect(deployments(w)).toHaveLength(2);
    expect(deployments(w).at(-1)?.body).toEqual({ source_code_path: source, mode: "SNAPSHOT" });
    // What runs is what was built: the synced tree holds the new file.
    expect(readFileSync(w.emulator.localPath(`${source}/runtime/start.mjs`), "utf8")).toMatch(/build/);
    expect(w.emulator.apps.get("metamcp-dev-someone")!.appState).toBe("RUNNING");
    const again = await w.run(["app-deploy", "--poll", "0.1", "--json"]);
    expect(JSON.parse(again.stdout)).toMatchObject({ by: "unchanged", state: "SUCCEEDED" });
    const forced = await w.run(["app-deploy", "--poll", "0.1", "--force", "--json"]);
    expect(JSON.parse(forced.stdout)).toMatchObject({ by: "app-deploy", state: "SUCCEEDED" });
    expect(deployments(w)).toHaveLength(3);
  });

  test("stopped compute: the CLI's bundle run starts the app, then deploys the tree", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    w.emulator.apps.get("metamcp-dev-someone")!.computeState = "STOPPED";
    const r = await w.run(["app-deploy", "--poll", "0.1", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      by: "app-deploy",
      state: "SUCCEEDED",
      computeStarted: true,
    });
    expect(r.stderr).toMatch(/✓ Starting the app metamcp-dev-someone[\s\S]*✓ App is started!/);
    expect(
      w.emulator.workspace.requests.filter((q) => q.path === "/api/2.0/apps/metamcp-dev-someone/start"),
    ).toHaveLength(2);
    expect(deployments(w)).toHaveLength(2);
  });

  test("--target prod deploys prod's app from prod's synced tree", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy", "--target", "prod"])).exitCode).toBe(0);
    rebuild(w);
    w.double.clearCalls();
    const r = await w.run(["app-deploy", "--target", "prod", "--poll", "0.1", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const summary = w.double.commands()[0];
    expect(summary).toEqual(
      expect.arrayContaining([
        "summary",
        "--target",
        "prod",
        "app_name=metamcp",
        "secret_scope=metamcp-secrets",
      ]),
    );
    expect(JSON.parse(r.stdout)).toMatchObject({ target: "prod", appName: "metamcp", state: "SUCCEEDED" });
    expect(deployments(w).at(-1)).toEqual({
      method: "POST",
      path: "/api/2.0/apps/metamcp/deployments",
      body: {
        source_code_path: "/Workspace/Users/someone@example.com/.bundle/metamcp-databricks/prod/files/app",
        mode: "SNAPSHOT",
      },
    });
  });

  test("a FAILED deployment prints the platform's message and the last log lines", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    rebuild(w);
    w.emulator.nextDeployment = {
      final: "FAILED",
      message: "App exited with code 1",
      logLines: ["[runtime] connecting to Lakebase", "error: permission denied for schema public"],
    };
    const r = await w.run(["app-deploy", "--poll", "0.1", "--json"]);
    expect(r.exitCode).toBe(4);
    expect(errorCode(r.stdout)).toBe("deployment_failed");
    // The CLI ends on FAILED with the platform's message; the deployment's id when a look caught it.
    expect(r.stderr).toMatch(
      /(deployment \w+|the deployment) of app metamcp-dev-someone FAILED: App exited with code 1/,
    );
    expect(r.stderr).toMatch(
      /last 2 log lines:\n {2}\[APP\] \[runtime\] connecting to Lakebase\n {2}\[APP\] error: permission denied/,
    );
  });

  test("a CANCELLED deployment ends the wait at once (the SDK's waiter alone would poll it until --timeout)", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    rebuild(w);
    // Long enough in flight for a look (every --poll) to see it: the CLI itself never says its id.
    w.emulator.nextDeployment = {
      final: "CANCELLED",
      message: "Deployment cancelled by a user",
      inProgressPolls: 30,
    };
    const r = await w.run(["app-deploy", "--timeout", "120", "--poll", "0.1", "--json"]);
    expect(r.exitCode).toBe(4);
    // Not deployment_timeout: the cancellation is the outcome.
    expect(errorCode(r.stdout)).toBe("deployment_cancelled");
    expect(r.stderr).toMatch(
      /deployment \w+ of app metamcp-dev-someone CANCELLED: Deployment cancelled by a user/,
    );
  });

  test("a FAILED deployment whose logs cannot be read says why", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    rebuild(w);
    w.emulator.nextDeployment = { final: "FAILED", message: "App exited with code 1" };
    await w.emulator.stopAppHost();
    const r = await w.run(["app-deploy", "--poll", "0.1"]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(
      /FAILED: App exited with code 1\n\(no log lines could be read: could not open the log stream .*connection refused/,
    );
  });

  test("--no-wait returns at PENDING; a second app-deploy meanwhile waits for it instead of failing 'in progress', and ships nothing twice", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    rebuild(w);
    // Long enough in flight for a look (every --poll) to see it.
    w.emulator.nextDeployment = {
      final: "SUCCEEDED",
      message: "App started successfully",
      inProgressPolls: 30,
    };
    const first = await w.run(["app-deploy", "--poll", "0.1", "--no-wait", "--json"]);
    expect(first.exitCode, first.stderr).toBe(0);
    // Not waiting for the outcome: the deployment as the first look saw it (the CLI had started following it).
    const started = JSON.parse(first.stdout) as { state: string; deploymentId: string };
    expect(["PENDING", "IN_PROGRESS"]).toContain(started.state);
    expect(started).toMatchObject({ appName: "metamcp-dev-someone", by: "app-deploy" });
    const pendingId = started.deploymentId;
    const status = await w.run(["app-status", "--json"]);
    expect(JSON.parse(status.stdout).pendingDeployment).toMatchObject({ id: pendingId });
    const second = await w.run(["app-deploy", "--poll", "0.1", "--json"]);
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stderr).toContain(`deployment ${pendingId} is already in progress: waiting for it first`);
    expect(JSON.parse(second.stdout)).toMatchObject({
      by: "unchanged",
      deploymentId: pendingId,
      state: "SUCCEEDED",
    });
    expect(deployments(w)).toHaveLength(2);
  });

  test("refused as 'in progress' with nothing pending (settling after a failure): says to wait for the platform", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    const active = w.emulator.apps.get("metamcp-dev-someone")!.activeId!;
    w.emulator.apps.get("metamcp-dev-someone")!.settling = true;
    rebuild(w);
    const r = await w.run(["app-deploy", "--poll", "0.1", "--json"]);
    expect(r.exitCode).toBe(4);
    expect(errorCode(r.stdout)).toBe("deployment_in_progress");
    expect(r.stderr).toContain(
      `already in progress, though none shows as pending (the active deployment, ${active}, is SUCCEEDED)`,
    );
    expect(r.stderr).toMatch(/→ after a failed deployment the platform can take 2-5 minutes to settle/);
  });

  test("a missing auth secret stops the deploy before it starts", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    w.emulator.secrets.get("metamcp-dev-someone-secrets")!.delete("better-auth-secret");
    const r = await w.run(["app-deploy", "--poll", "0.1"]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(
      /metamcp-dev-someone-secrets\/better-auth-secret \(BETTER_AUTH_SECRET\) is missing/,
    );
  });
});

describe("app-health and app-status", () => {
  test("healthy: status code and latency through the proxy with an OAuth token", async (ctx) => {
    const w = await newWorld(ctx);
    w.emulator.addApp("metamcp-dev-someone");
    const r = await w.run(["app-health", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({ healthy: true, status: 200, url: `${w.emulator.appUrl}/metamcp/health` });
    expect(result.latencyMs).toBeGreaterThan(0);
    // Browser-login profiles get their token from `databricks auth token --profile P`.
    const u2m = await w.run(["app-health", "--profile", "u2m"]);
    expect(u2m.exitCode, u2m.stderr).toBe(0);
    expect(u2m.stdout).toMatch(/^healthy: .* → 200 in \d+ ms/);
  });

  test("a redirect to the login page is not healthy; nor is a timeout; PATs are refused up front", async (ctx) => {
    const w = await newWorld(ctx);
    w.emulator.addApp("metamcp-dev-someone");
    w.emulator.proxyAcceptsTokens = false;
    const redirected = await w.run(["app-health", "--json"]);
    expect(redirected.exitCode).toBe(4);
    expect(errorCode(redirected.stdout)).toBe("redirected_to_login");
    expect(redirected.stderr).toMatch(/answered 302, a redirect to the login page/);

    w.emulator.proxyAcceptsTokens = true;
    w.health.status = 503;
    const slow = await w.run(["app-health", "--timeout", "1.5", "--interval", "0.3"]);
    expect(slow.exitCode).toBe(4);
    expect(slow.stdout).toMatch(/NOT healthy after \d+s and \d+ attempts: .* → HTTP 503/);

    const pat = await w.run(["app-health", "--profile", "pat", "--json"]);
    expect(pat.exitCode).toBe(2);
    expect(errorCode(pat.stdout)).toBe("pat_not_accepted");
    expectNoSecrets(w, pat.stdout, pat.stderr);
  });

  test("app-status: states, URL, deployments (--json for pipelines); an unknown app says what to run", async (ctx) => {
    const w = await newWorld(ctx);
    const none = await w.run(["app-status"]);
    expect(none.exitCode).toBe(4);
    expect(none.stderr).toMatch(/app metamcp-dev-someone does not exist[\s\S]*make bundle-deploy TARGET=dev/);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    const r = await w.run(["app-status", "--json"]);
    expect(JSON.parse(r.stdout)).toMatchObject({
      name: "metamcp-dev-someone",
      appState: "RUNNING",
      computeState: "ACTIVE",
      url: w.emulator.appUrl,
      activeDeployment: { state: "SUCCEEDED" },
    });
    const human = await w.run(["app-status"]);
    expect(human.stdout).toMatch(/state +RUNNING[\s\S]*compute +ACTIVE[\s\S]*active +\w+ SUCCEEDED/);
    // `databricks apps get` reads it, as the profile.
    expect(w.double.commands().filter((a) => a[0] === "apps")).toContainEqual([
      "apps",
      "get",
      "metamcp-dev-someone",
      "-o",
      "json",
      "--profile",
      "DEFAULT",
    ]);
    // A profile the config file does not have: the CLI's refusal, said as ours (exit 2).
    const nosuch = await w.run(["app-status", "--profile", "nosuch", "--json"], { DEV_USER: "someone" });
    expect(nosuch.exitCode, nosuch.stderr).toBe(2);
    expect(errorCode(nosuch.stdout)).toBe("profile_missing");
    expect(nosuch.stderr).toMatch(/has no nosuch profile configured[\s\S]*databricks auth login --host/);
  });
});

test("an unreachable workspace is named as such, not as a login problem", async (ctx) => {
  const w = await newWorld(ctx);
  await w.emulator.close();
  for (const profile of ["DEFAULT", "pat"]) {
    const r = await w.run(["app-status", "--profile", profile, "--json"]);
    expect(r.exitCode).toBe(4);
    expect(errorCode(r.stdout)).toBe("workspace_unreachable");
    expect(r.stderr).toMatch(/the workspace did not answer: check the profile's host and your network/);
  }
});

describe("app-logs", () => {
  test("prints the stream's lines; --search is sent as the filter; --tail keeps the last N", async (ctx) => {
    const w = await newWorld(ctx);
    w.emulator.addApp("metamcp-dev-someone");
    for (const l of ["starting", "migrations applied", "listening on 8000"]) w.emulator.logs.push("APP", l);
    const all = await w.run(["app-logs"]);
    expect(all.exitCode, all.stderr).toBe(0);
    expect(all.stdout).toMatch(
      /Z \[APP\] starting\n.*Z \[APP\] migrations applied\n.*Z \[APP\] listening on 8000\n$/,
    );
    const search = await w.run(["app-logs", "--search", "migrations"]);
    expect(search.stdout.trim().split("\n")).toHaveLength(1);
    expect(search.stdout).toContain("migrations applied");
    const tail = await w.run(["app-logs", "--tail", "1", "--json"]);
    expect(JSON.parse(tail.stdout)).toMatchObject({ source: "APP", message: "listening on 8000" });
    // The CLI's own `apps logs` reads the stream.
    const logs = w.double.commands().filter((a) => a[0] === "apps" && a[1] === "logs");
    expect(logs).toEqual([
      ["apps", "logs", "metamcp-dev-someone", "-o", "json", "--profile", "DEFAULT"],
      ["apps", "logs", "metamcp-dev-someone", "--search", "migrations", "-o", "json", "--profile", "DEFAULT"],
      ["apps", "logs", "metamcp-dev-someone", "--tail-lines", "1", "-o", "json", "--profile", "DEFAULT"],
    ]);
  });

  test("--follow: the CLI reopens a dropped stream (silently, as it does); what it sends again is not shown twice; Ctrl-C ends cleanly", async (ctx) => {
    const w = await newWorld(ctx);
    w.emulator.addApp("metamcp-dev-someone");
    w.emulator.logs.push("APP", "line one");
    const child = execa("node", [CLI_BIN, "app-logs", "--follow"], {
      cwd: w.project,
      env: { PATH: process.env.PATH, NO_COLOR: "1", ...w.env() },
      extendEnv: false,
      reject: false,
    });
    let out = "";
    let err = "";
    child.stdout?.on("data", (d) => {
      out += String(d);
    });
    child.stderr?.on("data", (d) => {
      err += String(d);
    });
    const until = async (what: () => boolean, label: string) => {
      const deadline = Date.now() + 30_000;
      while (!what()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${label}; out=${out} err=${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    /** The CLI checks the app still runs before each reconnect (logs.go appStatusChecker). */
    const statusChecks = () =>
      w.emulator.workspace.requests.filter(
        (q) => q.method === "GET" && q.path === "/api/2.0/apps/metamcp-dev-someone",
      ).length;
    try {
      await until(() => out.includes("line one"), "the first line");
      expect(w.double.commands()).toContainEqual([
        "apps",
        "logs",
        "metamcp-dev-someone",
        "--follow",
        "-o",
        "json",
        "--profile",
        "DEFAULT",
      ]);
      w.emulator.logs.push("APP", "line two");
      await until(() => out.includes("line two"), "a live line");
      expect(w.emulator.dropLogStreams()).toBe(1);
      await until(() => w.emulator.openLogStreams() === 1, "a new stream");
      w.emulator.logs.push("APP", "line three");
      await until(() => out.includes("line three"), "a line after the reconnect");
      // The host goes away: the CLI keeps trying (backing off), checking the app before each try.
      const checks = statusChecks();
      await w.emulator.stopAppHost();
      await until(() => statusChecks() >= checks + 2, "two reconnects without a host");
      await w.emulator.restartAppHost();
      w.emulator.logs.push("APP", "line four");
      await until(() => out.includes("line four"), "a line after the host came back");
      child.kill("SIGINT");
      const r = await child;
      expect(r.exitCode, `${r.signal} ${err}`).toBe(0);
      // The stream sends everything again on each reconnect; each line is shown once.
      const lines = out.trim().split("\n");
      expect(lines.map((l) => l.replace(/^\S+ /, ""))).toEqual([
        "[APP] line one",
        "[APP] line two",
        "[APP] line three",
        "[APP] line four",
      ]);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

test("a log stream that cannot be opened is an error, not an empty log", async (ctx) => {
  const w = await newWorld(ctx);
  w.emulator.addApp("metamcp-dev-someone");
  await w.emulator.stopAppHost();
  const r = await w.run(["app-logs", "--json"]);
  expect(r.exitCode).toBe(4);
  expect(errorCode(r.stdout)).toBe("logs_unreachable");
  // The CLI's own words for it (Go's dialer).
  expect(r.stderr).toMatch(
    /could not open the log stream of app metamcp-dev-someone: dial tcp 127\.0\.0\.1:\d+: connect: connection refused\n {2}→ check that the app is deployed and running/,
  );
});

describe("destroy", () => {
  test("asks first (refuses without a terminal), --yes destroys the dev bundle: the project it created purged, our secret scope deleted; prod is refused", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    w.double.clearCalls();
    const unconfirmed = await w.run(["destroy"]);
    expect(unconfirmed.exitCode).toBe(2);
    expect(unconfirmed.stderr).toMatch(/destroy not confirmed: nothing deleted\n {2}→ add --yes/);
    expect(w.double.commands()).toEqual([]);

    const prod = await w.run(["destroy", "--target", "prod", "--yes"]);
    expect(prod.exitCode).toBe(2);
    expect(prod.stderr).toContain("destroy only removes the dev target, not prod");

    rmSync(path.join(w.project, "build/databricks.yml"));
    const r = await w.run(["destroy", "--yes"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(w.double.commands()).toEqual([
      ["bundle", "destroy", "--target", "dev", "--auto-approve", ...DEV_VARS, "--profile", "DEFAULT"],
    ]);
    expect(existsSync(path.join(w.project, "build/databricks.yml"))).toBe(true);
    expect(w.emulator.apps.has("metamcp-dev-someone")).toBe(false);
    // purge_on_delete: the project is gone for good (DELETE ...?purge=true), so its id can be reused.
    expect(w.emulator.deletedProjects).toEqual([{ projectId: "metamcp-dev-someone-db", purged: true }]);
    expect(w.emulator.secrets.has("metamcp-dev-someone-secrets")).toBe(false);
    expect(r.stdout).toContain("destroyed: app metamcp-dev-someone");
  });

  test("an attached project and a scope the user made are left alone", async (ctx) => {
    const w = await newWorld(ctx);
    // The user's own project (with its database) and secret scope, made before us.
    await w.run(["doctor"]);
    w.emulator.projects.set("shared-db", {
      projectId: "shared-db",
      branches: new Map([
        [
          "production",
          {
            roles: new Map(),
            databases: new Map([["app-db", { databaseId: "app-db", postgresDatabase: "app_db", role: "" }]]),
            endpoints: new Set(["primary"]),
          },
        ],
      ]),
    });
    w.emulator.secrets.set("team-secrets", new Map([["other", "x"]]));
    const env = {
      LAKEBASE_CREATE: "false",
      LAKEBASE_PROJECT: "shared-db",
      LAKEBASE_DATABASE: "app_db",
      SECRET_SCOPE: "team-secrets",
    };
    const d = await w.run(["bundle-deploy"], env);
    expect(d.exitCode, d.stderr).toBe(0);
    expect(w.emulator.secrets.get("team-secrets")?.has("better-auth-secret")).toBe(true);
    const r = await w.run(["destroy", "--yes"], env);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(w.emulator.apps.has("metamcp-dev-someone")).toBe(false);
    expect(w.emulator.projects.has("shared-db")).toBe(true);
    expect(w.emulator.deletedProjects).toEqual([]);
    expect(w.emulator.secrets.get("team-secrets")?.get("other")).toBe("x");
    expect(r.stdout).toContain("kept: Lakebase project shared-db (attached, not created by the bundle)");
    expect(r.stdout).toContain("kept: secret scope team-secrets (bundle-deploy did not create it)");
  });
});

describe("a team's deploy", () => {
  test("two developers of one workspace deploy dev side by side: each their own app, database and secret", async (ctx) => {
    const w = await newWorld(ctx);
    const alice = await w.run(["bundle-deploy", "--json"]);
    expect(alice.exitCode, alice.stderr).toBe(0);
    const bob = await w.run(["bundle-deploy", "--json", "--profile", "bob"]);
    expect(bob.exitCode, bob.stderr).toBe(0);
    // Bob.O'Brien-Smith@example.com: the CLI's short_name would be bob_o_brien_smith, no app name's form.
    const bobApp = "metamcp-dev-bob-o-brien-smith";
    expect((JSON.parse(alice.stdout) as { appName: string }).appName).toBe("metamcp-dev-someone");
    expect((JSON.parse(bob.stdout) as { appName: string }).appName).toBe(bobApp);
    expect([...w.emulator.apps.keys()].sort()).toEqual([bobApp, "metamcp-dev-someone"]);
    expect([...w.emulator.projects.keys()].sort()).toEqual([`${bobApp}-db`, "metamcp-dev-someone-db"]);
    const secretOf = (scope: string) => w.emulator.secrets.get(scope)?.get("better-auth-secret");
    expect(secretOf(`${bobApp}-secrets`)).toBeTruthy();
    expect(secretOf("metamcp-dev-someone-secrets")).toBeTruthy();
    expect(secretOf(`${bobApp}-secrets`)).not.toBe(secretOf("metamcp-dev-someone-secrets"));
    // Each reads back their own app.
    const status = await w.run(["app-status", "--json", "--profile", "bob"]);
    expect((JSON.parse(status.stdout) as { name: string }).name).toBe(bobApp);
    // DEV_USER set names dev without a lookup; prod stays fixed whoever deploys.
    const named = await w.run(["render", "--out", "out", "--json"], { DEV_USER: "ci" });
    expect(named.exitCode, named.stderr).toBe(0);
    expect(readFileSync(path.join(w.project, "out/databricks.yml"), "utf8")).toContain(
      "app_name: metamcp-dev-ci",
    );
    const prod = await w.run(["render", "--out", "out-prod", "--target", "prod", "--profile", "bob"]);
    expect(prod.exitCode, prod.stderr).toBe(0);
    expect(readFileSync(path.join(w.project, "out-prod/databricks.yml"), "utf8")).toMatch(
      /prod:[\s\S]*app_name: metamcp\n/,
    );
  });

  test("APP_CAN_USE / APP_CAN_MANAGE become the app's permissions, applied; managers reach the app's env; doctor says who can open it", async (ctx) => {
    const w = await newWorld(ctx);
    const env = {
      APP_CAN_USE: "data-users, viewer@example.com",
      APP_CAN_MANAGE: "platform-admins,f37d18cd-98a8-4db5-8112-12dd0a6bfe38",
      APP_COMPUTE_SIZE: "LARGE",
    };
    const doc = await w.run(["doctor"], env);
    expect(doc.stdout).toContain(
      "✔ access          app metamcp-dev-someone opens for you and CAN_MANAGE: group platform-admins, service principal f37d18cd-98a8-4db5-8112-12dd0a6bfe38; CAN_USE: group data-users, user viewer@example.com",
    );
    const r = await w.run(["bundle-deploy"], env);
    expect(r.exitCode, r.stderr).toBe(0);
    const app = w.emulator.apps.get("metamcp-dev-someone");
    expect(app?.computeSize).toBe("LARGE");
    expect(app?.acl).toEqual([
      { group_name: "platform-admins", permission_level: "CAN_MANAGE" },
      { service_principal_name: "f37d18cd-98a8-4db5-8112-12dd0a6bfe38", permission_level: "CAN_MANAGE" },
      { group_name: "data-users", permission_level: "CAN_USE" },
      { user_name: "viewer@example.com", permission_level: "CAN_USE" },
      // The CLI adds the deploying user (fix_permissions.go).
      { user_name: "someone@example.com", permission_level: "CAN_MANAGE" },
    ]);
    const appYaml = readFileSync(path.join(w.project, "build/app/app.yaml"), "utf8");
    expect(appYaml).toContain(
      "- name: METAMCP_APP_MANAGERS\n    value: platform-admins,f37d18cd-98a8-4db5-8112-12dd0a6bfe38",
    );
    const none = await w.run(["doctor"]);
    expect(none.stdout).toContain(
      "✔ access          only you (the deployer) and workspace admins can open app metamcp-dev-someone",
    );
    const bad = await w.run(["render", "--out", "x"], { APP_COMPUTE_SIZE: "HUGE" });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('APP_COMPUTE_SIZE="HUGE"');
  });

  test("an mcp- app needs METAMCP_DEFAULT_ENDPOINT, which reaches the app's env", async (ctx) => {
    const w = await newWorld(ctx);
    const missing = await w.run(["render", "--out", "out"], { APP_BASE_NAME: "mcp-gw" });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain(
      "starts with mcp- (AI Playground calls <app url>/mcp): set METAMCP_DEFAULT_ENDPOINT",
    );
    const ok = await w.run(["render", "--out", "out"], {
      APP_BASE_NAME: "mcp-gw",
      METAMCP_DEFAULT_ENDPOINT: "tools",
    });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(readFileSync(path.join(w.project, "out/app.yaml"), "utf8")).toContain(
      "- name: METAMCP_DEFAULT_ENDPOINT\n    value: tools",
    );
  });
});

describe("the CLI double refuses what the Databricks CLI refuses (fixtures/platform-cases.md, the CLI commands we run)", () => {
  /** The `databricks` on the world's PATH, run as a user would, in the bundle root. */
  const databricks = (w: DatabricksWorld, args: string[], input?: string) =>
    execa(path.join(w.double.binDir, "databricks"), args, {
      cwd: path.join(w.project, "build"),
      env: w.env(),
      reject: false,
      ...(input === undefined ? { stdin: "ignore" as const } : { input }),
    });

  test("flags, arguments and the order of things, with the CLI's messages and exit 1", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["render"])).exitCode).toBe(0);
    const cases: [string[], RegExp][] = [
      [
        ["apps", "get"],
        /^Error: accepts 1 arg\(s\), received 0\n\nUsage:\n {2}databricks apps get NAME \[flags\]/,
      ],
      [["apps", "logs", "x", "--tail", "5"], /^Error: unknown flag: --tail\n\nUsage:/],
      [["apps", "logs", "x", "y"], /^Error: accepts at most 1 arg\(s\), received 2/],
      [["apps", "logs", "x", "--tail-lines", "-1"], /^Error: --tail-lines cannot be negative$/],
      [["apps", "get", "nosuch"], /^Error: App with name nosuch does not exist or is deleted\.$/],
      [["apps", "get-deployment", "x"], /^Error: accepts 2 arg\(s\), received 1/],
      [["secrets", "put-secret", "s"], /^Error: accepts 2 arg\(s\), received 1/],
      [
        ["secrets", "put-secret", "s", "k", "--string-value", "a", "--bytes-value", "b"],
        /^Error: cannot specify both --bytes-value and --string-value$/,
      ],
      [["bundle", "sync", "now", ...DEV_VARS], /^Error: unknown command "now" for "databricks bundle sync"/],
      [["bundle", "run", ...DEV_VARS], /^Error: expected a KEY of the resource to run$/],
      [
        ["bundle", "run", "metamcp", ...DEV_VARS],
        /^Error: resource not found or not yet deployed\. Did you forget to run 'databricks bundle deploy'\?$/,
      ],
      [
        ["bundle", "destroy", ...DEV_VARS],
        /^Error: this command will destroy all resources deployed by this bundle, including workspace files in the deployment directory\.\n.*\nTo proceed, use --auto-approve\.$/,
      ],
      [["apps", "frobnicate"], /^Error: unknown command "frobnicate" for "databricks apps"/],
      [["apps", "get", "x", "-z"], /^Error: unknown shorthand flag: 'z' in -z/],
    ];
    for (const [args, expected] of cases) {
      const r = await databricks(w, args);
      expect(r.exitCode, args.join(" ")).toBe(1);
      expect(r.stderr, args.join(" ")).toMatch(expected);
    }
    // Nothing was written by a refused put-secret.
    expect(w.emulator.workspace.requests.filter((q) => q.path === "/api/2.0/secrets/put")).toEqual([]);
  });

  test("after a deploy: bundle run takes the app's key and no other argument; put-secret reads stdin", async (ctx) => {
    const w = await newWorld(ctx);
    expect((await w.run(["bundle-deploy"])).exitCode).toBe(0);
    const extra = await databricks(w, ["bundle", "run", "metamcp", "now", ...DEV_VARS]);
    expect(extra.exitCode).toBe(1);
    expect(extra.stderr).toBe("Error: received 1 unexpected positional arguments");
    const unknown = await databricks(w, ["bundle", "run", "nope", ...DEV_VARS]);
    expect(unknown.stderr).toBe('Error: resource with key "nope" not found');
    const put = await databricks(w, ["secrets", "put-secret", "metamcp-dev-someone-secrets", "k"], "v a l\n");
    expect(put.exitCode, put.stderr).toBe(0);
    expect(w.emulator.secrets.get("metamcp-dev-someone-secrets")?.get("k")).toBe("v a l\n");
  });
});
