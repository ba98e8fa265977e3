import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { type LocalPlatform, startPlatform } from "../../src/local/platform/index.js";
import { freePort } from "../../src/local/postgres.js";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import { createFakeAppTree, freeInternalPorts } from "../support/fake-app-tree.js";
import { type RestartablePostgres, startRestartablePostgres } from "./fault-rig.js";

/**
 * The whole process group stopped at once (`kill -- -PGID`, or the platform stopping the app): the runtime
 * and MetaMCP's processes all get SIGTERM. A child that dies of that SIGTERM is part of the stop, not a
 * crash: the runtime must not restart it (it did: the children were told of the stop only after the
 * router had drained, so their exits in the meantime were taken for crashes).
 */
interface Running {
  child: ChildProcess;
  lines: string[];
  tmp: string;
}

let db: RestartablePostgres;
let platform: LocalPlatform;
let treeDir: string;
let internal: Awaited<ReturnType<typeof freeInternalPorts>>;
let appPort: number;
const running: Running[] = [];

function startRuntime(): Running {
  const tmp = mkdtempSync(path.join(os.tmpdir(), "mmdb-grp-tmp-"));
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/tmp",
    TMPDIR: tmp,
  };
  for (const [k, v] of Object.entries({ ...platform.appEnv, ...internal.env }))
    if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, [path.join(treeDir, "runtime/start.mjs")], {
    cwd: treeDir,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, as on the platform
  });
  const lines: string[] = [];
  for (const s of [child.stdout!, child.stderr!])
    createInterface({ input: s }).on("line", (l) => {
      try {
        const j = JSON.parse(l) as { tag?: string; msg: string; level: string };
        lines.push(`[${j.tag ?? ""}] ${j.level}: ${j.msg}`);
      } catch {
        lines.push(l);
      }
    });
  const r = { child, lines, tmp };
  running.push(r);
  return r;
}

async function waitLine(r: Running, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    () => {
      if (r.lines.some((l) => pattern.test(l))) return true;
      if (r.child.exitCode !== null) throw new Error(`exited ${r.child.exitCode}:\n${r.lines.join("\n")}`);
      return undefined;
    },
    { timeoutMs, what: `a log line matching ${pattern}`, intervalMs: 50 },
  );
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("SIGTERM to the app's whole process group", () => {
  beforeAll(async () => {
    db = await startRestartablePostgres({ database: "databricks_postgres", role: "5e1a2b3c-grp-sp" });
    internal = await freeInternalPorts();
    treeDir = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), "mmdb-grp-tree-")), {
      backendPort: internal.backendPort,
    });
    appPort = await freePort();
    const config = loadConfig({
      cwd: treeDir,
      env: { APP_NAME: "metamcp-test", LAKEBASE_DATABASE: db.database },
    });
    platform = await startPlatform({
      config,
      secrets: {
        betterAuthSecret: "a-real-looking-secret-0123456789",
        clientId: db.role,
        clientSecret: "sp-secret-group",
        pgSuperPassword: "",
        userClientId: "local-cli-test",
        userClientSecret: "user-client-secret-test",
      },
      postgres: db,
      proxyPort: await freePort(),
      appPort,
      credentialTtlSeconds: 600,
      log: silentLogger,
    });
  });

  afterEach(() => {
    for (const r of running.splice(0)) {
      try {
        process.kill(-r.child.pid!, "SIGKILL");
      } catch {
        // the group is gone
      }
      rmSync(r.tmp, { recursive: true, force: true });
    }
  });

  afterAll(async () => {
    await platform?.close();
    await db?.stop();
    if (treeDir) rmSync(treeDir, { recursive: true, force: true });
  });

  it("stops: MetaMCP's processes are not restarted, the runtime exits 0 and leaves no process", async () => {
    const app = startRuntime();
    await waitLine(app, /\[start\] success: MetaMCP is ready/);
    // A client's stream open through the router keeps the runtime draining for a moment, as a browser's
    // does on the platform: that is when the children, dying of the same SIGTERM, were restarted.
    const res = await fetch(`http://127.0.0.1:${appPort}/metamcp/sse?n=100000&gap=50`);
    const reader = res.body!.getReader();
    expect((await reader.read()).done).toBe(false); // the first event: the stream is open end to end
    const pgid = app.child.pid!;
    process.kill(-pgid, "SIGTERM");
    const code = await waitFor(
      () =>
        app.child.exitCode !== null || app.child.signalCode !== null
          ? { code: app.child.exitCode }
          : undefined,
      { timeoutMs: 20_000, what: "the runtime to exit", intervalMs: 50 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${app.lines.join("\n")}`);
    });
    await reader.cancel().catch(() => {});
    const out = app.lines.join("\n");
    expect(out).toMatch(/shutting down: SIGTERM/);
    expect(out).not.toMatch(/exited unexpectedly/);
    expect(out).not.toMatch(/restarting in/);
    expect(code.code, out).toBe(0);
    await waitFor(() => (groupAlive(pgid) ? undefined : true), {
      timeoutMs: 10_000,
      what: "every process of the group to be gone",
    });
  });
});
