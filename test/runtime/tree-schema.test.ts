import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { type LocalPlatform, startPlatform } from "../../src/local/platform/index.js";
import { freePort } from "../../src/local/postgres.js";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import { TREE_MANIFEST } from "../../src/runtime/tree-schema.js";
import { createFakeAppTree, freeInternalPorts } from "../support/fake-app-tree.js";
import { type RestartablePostgres, startRestartablePostgres } from "./fault-rig.js";

/**
 * app.yaml's METAMCP_DB_SCHEMA and the tree disagreeing (issue 22 item 9): the runtime bundle, on a tree
 * whose manifest says it was prepared for metamcp_app, started with METAMCP_DB_SCHEMA=other. It used to
 * create the empty schema `other`, then fail in the migrations (`schema "metamcp_app" does not exist`, exit 1).
 */
let db: RestartablePostgres;
let platform: LocalPlatform;
let treeDir: string;
let internal: Awaited<ReturnType<typeof freeInternalPorts>>;

async function runRuntime(schema: string): Promise<{ code: number | null; lines: string[] }> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "mmdb-tsch-tmp-"));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/tmp",
    TMPDIR: tmp,
  };
  for (const [k, v] of Object.entries({ ...platform.appEnv, ...internal.env, METAMCP_DB_SCHEMA: schema }))
    if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, [path.join(treeDir, "runtime/start.mjs")], {
    cwd: treeDir,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const lines: string[] = [];
  for (const s of [child.stdout!, child.stderr!])
    createInterface({ input: s }).on("line", (l) => {
      try {
        const j = JSON.parse(l) as { msg: string; level: string };
        lines.push(`${j.level}: ${j.msg}`);
      } catch {
        lines.push(l);
      }
    });
  try {
    const code = await waitFor(
      () => (child.exitCode !== null || child.signalCode !== null ? { code: child.exitCode } : undefined),
      { timeoutMs: 20_000, what: "the runtime to exit", intervalMs: 50 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${lines.join("\n")}`);
    });
    return { code: code.code, lines };
  } finally {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // the group is gone
    }
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function schemaExists(name: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: db.adminUrl(db.database) });
  await c.connect();
  try {
    return (await c.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [name])).rowCount === 1;
  } finally {
    await c.end();
  }
}

describe("the runtime on a tree prepared for another schema", () => {
  beforeAll(async () => {
    db = await startRestartablePostgres({ database: "databricks_postgres", role: "6c2d3e4f-tsch-sp" });
    internal = await freeInternalPorts();
    treeDir = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), "mmdb-tsch-tree-")), {
      backendPort: internal.backendPort,
    });
    mkdirSync(path.join(treeDir, path.dirname(TREE_MANIFEST)), { recursive: true });
    writeFileSync(
      path.join(treeDir, TREE_MANIFEST),
      JSON.stringify({ schema: "metamcp_app", commit: "0".repeat(40) }),
    );
    const config = loadConfig({
      cwd: treeDir,
      env: { APP_NAME: "metamcp-test", LAKEBASE_DATABASE: db.database },
    });
    platform = await startPlatform({
      config,
      secrets: {
        betterAuthSecret: "a-real-looking-secret-0123456789",
        clientId: db.role,
        clientSecret: "sp-secret-tree-schema",
        pgSuperPassword: "",
        userClientId: "local-cli-test",
        userClientSecret: "user-client-secret-test",
      },
      postgres: db,
      proxyPort: await freePort(),
      appPort: await freePort(),
      credentialTtlSeconds: 600,
      log: silentLogger,
    });
  });

  afterAll(async () => {
    await platform?.close();
    await db?.stop();
    if (treeDir) rmSync(treeDir, { recursive: true, force: true });
  });

  it("METAMCP_DB_SCHEMA=other: exit 2 naming both values and the fix, and no schema `other` left behind", async () => {
    const r = await runRuntime("other");
    const out = r.lines.join("\n");
    expect(r.code, out).toBe(2);
    expect(out).toMatch(
      /METAMCP_DB_SCHEMA is "other" but the app tree in .* was prepared for schema "metamcp_app" .*nothing was created → set METAMCP_DB_SCHEMA=metamcp_app \(app\.yaml's env, then deploy again\), or prepare and build again with METAMCP_DB_SCHEMA=other/,
    );
    expect(out).not.toMatch(/a bug|internal error/);
    expect(await schemaExists("other")).toBe(false);
  });
});
