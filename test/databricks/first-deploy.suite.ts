import { appendFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, test } from "vitest";
import { freePort } from "../../src/local/postgres.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { type DatabricksWorld, startDatabricksWorld } from "../support/databricks-world.js";
import { createFakeAppTree, FAKE_TREE_TABLES } from "../support/fake-app-tree.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

/**
 * The first deploy, rehearsed end to end: an empty emulated workspace → doctor → bundle-deploy →
 * app-deploy → app-health healthy. The emulator really runs the synced app tree (our runtime bundle and a
 * MetaMCP-shaped tree) with exactly the environment app.yaml and the app's resources produce, against
 * embedded PostgreSQL with Lakebase's permissions, and its service principal may NOT read its own app.
 * Then a redeploy of a new build, then destroy.
 */
const RUNTIME = path.join(PROJECT_ROOT, "dist/runtime/start.mjs");
const built = existsSync(RUNTIME);

let postgres: LakebaseLikePostgres | undefined;
let w: DatabricksWorld | undefined;
const root = mkdtempSync(path.join(os.tmpdir(), "mmdb-first-deploy-"));

beforeAll(async () => {
  if (!built) return;
  postgres = await startLakebaseLikePostgres();
  const appPort = await freePort();
  w = await startDatabricksWorld(
    root,
    {},
    {
      runner: { appPort, postgres, startTimeoutMs: 60_000 },
      appTree: (dir) => createFakeAppTree(dir),
    },
  );
}, 120_000);

afterAll(async () => {
  await w?.close();
  await postgres?.stop();
  rmSync(root, { recursive: true, force: true });
}, 60_000);

async function tables(database: string, schema: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: postgres!.adminUrl(database) });
  await c.connect();
  try {
    const r = await c.query<{ table_name: string }>(
      "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
      [schema],
    );
    return r.rows.map((x) => x.table_name);
  } finally {
    await c.end();
  }
}

test.skipIf(!built)(
  `empty workspace → doctor → bundle-deploy → app-deploy → app-health healthy; redeploy; destroy${
    built ? "" : " (skipped: dist/runtime/start.mjs is not built: run `npm run build`)"
  }`,
  async () => {
    const world = w!;
    const doctor = await world.run(["doctor"]);
    expect(doctor.exitCode, doctor.stdout).toBe(0);

    // First deploy: the app is created stopped, its URL goes into app.yaml, then bundle deploy starts it
    // and deploys the tree itself; the runtime comes up without reading its own app (403 for it).
    expect(world.emulator.spMayReadOwnApp).toBe(false);
    const deploy = await world.run(["bundle-deploy", "--json"]);
    expect(deploy.exitCode, deploy.stderr).toBe(0);
    const result = JSON.parse(deploy.stdout);
    expect(result).toMatchObject({ firstDeploy: true, codeDeployment: { state: "SUCCEEDED" } });
    const running = world.emulator.runningApp;
    expect(running?.deploymentId).toBe(result.codeDeployment.id);
    const lines = () => world.emulator.logs.snapshot().map((e) => e.message);
    expect(lines()).toContainEqual(expect.stringContaining(`METAMCP_APP_URL is ${world.emulator.appUrl}`));

    // app-deploy right after: the tree already runs, no second deployment.
    const same = await world.run(["app-deploy", "--poll", "0.2", "--json"]);
    expect(same.exitCode, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout)).toMatchObject({ by: "unchanged", deploymentId: running?.deploymentId });

    const health = await world.run(["app-health", "--timeout", "60", "--interval", "0.3", "--json"]);
    expect(health.exitCode, health.stdout + health.stderr).toBe(0);
    expect(JSON.parse(health.stdout)).toMatchObject({ healthy: true, status: 200 });
    // Migrations ran in OUR database (the bundle's postgres_databases), in our schema, as the app's role.
    expect(await tables("metamcp", "metamcp_app")).toEqual(FAKE_TREE_TABLES);

    // A new build: bundle-deploy only syncs (no setting changed), app-deploy ships it with a SNAPSHOT.
    appendFileSync(path.join(world.project, "build/app/metamcp/apps/frontend/server.js"), "\n// rebuilt\n");
    const again = await world.run(["bundle-deploy", "--json"]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).codeDeployment).toBeUndefined();
    const redeploy = await world.run(["app-deploy", "--poll", "0.2", "--json"]);
    expect(redeploy.exitCode, redeploy.stderr).toBe(0);
    const r = JSON.parse(redeploy.stdout);
    expect(r).toMatchObject({ by: "app-deploy", state: "SUCCEEDED" });
    expect(world.emulator.runningApp?.deploymentId).toBe(r.deploymentId);
    expect(world.emulator.runningApp?.pid).not.toBe(running?.pid);
    const health2 = await world.run(["app-health", "--timeout", "60", "--interval", "0.3"]);
    expect(health2.exitCode, health2.stdout + health2.stderr).toBe(0);
    // The fake tree's migrations (notes, config, better-auth's tables, endpoints), all applied at the first start.
    expect(lines()).toContainEqual(expect.stringMatching(/up to date \(4 migrations\)/));

    const destroy = await world.run(["destroy", "--yes"]);
    expect(destroy.exitCode, destroy.stderr).toBe(0);
    expect(world.emulator.runningApp).toBeUndefined();
    expect(world.emulator.apps.size).toBe(0);
    expect(world.emulator.deletedProjects).toEqual([{ projectId: "metamcp-dev-someone-db", purged: true }]);
    expect(world.emulator.secrets.size).toBe(0);
  },
  300_000,
);
