import { type ChildProcess, spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { runCli } from "../support/cli.js";
import { expectGolden } from "../support/golden.js";
import { NEEDS_NPM_REGISTRY, npmRegistryReachable } from "../support/npm-registry.js";
import { writePreparedTree } from "../support/synthetic-app.js";
import { tempDir } from "../support/tmp.js";

const registry = await npmRegistryReachable;

/**
 * `build` end to end, through the real CLI binary, on the synthetic MetaMCP-shaped workspace: a real
 * `pnpm@9.0.0` from the npm registry installs (frozen lockfile) and builds it. One built fixture is shared
 * by the tests that only read it; the failure cases each get their own small one.
 */

interface Fixture {
  root: string;
  buildDir: string;
  appDir: string;
  runtime: string;
}

function makeFixture(root: string, extra: Record<string, string | Buffer> = {}): Fixture {
  const fixture = {
    root,
    buildDir: path.join(root, "build/metamcp"),
    appDir: path.join(root, "build/app"),
    runtime: path.join(root, "start.mjs"),
  };
  writePreparedTree(fixture.buildDir, { extra });
  writeFileSync(fixture.runtime, 'console.log("metamcp-databricks runtime v1");\n');
  writeFileSync(path.join(root, "secrets-preload.mjs"), "// metamcp-databricks secrets preload v1\n");
  writeFileSync(path.join(root, "telemetry.mjs"), "// metamcp-databricks telemetry v1\n");
  return fixture;
}

function build(f: Fixture, ...args: string[]) {
  return runCli(
    [
      "--json",
      "build",
      "--build-dir",
      f.buildDir,
      "--app-dir",
      f.appDir,
      "--runtime-bundle",
      f.runtime,
      ...args,
    ],
    { cwd: f.root },
  );
}

function allFiles(dir: string, rel = ""): string[] {
  return readdirSync(path.join(dir, rel))
    .sort()
    .flatMap((e) => {
      const r = rel ? `${rel}/${e}` : e;
      const st = lstatSync(path.join(dir, r));
      if (st.isSymbolicLink()) return [`${r} -> (symlink)`];
      return st.isDirectory() ? allFiles(dir, r) : [r];
    });
}

/** Starts `node <entry>` with nothing but PATH and PORT=0, waits for its "listening on N" line. */
async function startNode(cwd: string, entry: string, env: Record<string, string> = {}) {
  const child: ChildProcess = spawn(process.execPath, [entry], {
    cwd,
    env: { PATH: process.env.PATH ?? "", PORT: "0", HOSTNAME: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  onTestFinished(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  let output = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${entry} did not start within 15 s:\n${output}`)),
      15_000,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const m = /listening on (\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${entry} exited with ${code}:\n${output}`));
    });
  });
  return { child, port };
}

describe.skipIf(!registry)(registry ? "build" : `build (${NEEDS_NPM_REGISTRY})`, () => {
  let shared: Fixture;
  let first: { exitCode: number; stdout: string; stderr: string };
  let sharedRoot: string;

  beforeAll(async () => {
    sharedRoot = mkdtempSync(path.join(os.tmpdir(), "mmdb-build-"));
    shared = makeFixture(sharedRoot);
    first = await build(shared);
  });
  afterAll(() => {
    if (sharedRoot) rmSync(sharedRoot, { recursive: true, force: true });
  });

  it("installs with the pinned pnpm, builds, and assembles a lean app tree", () => {
    expect(first.stderr).toContain("npx --yes pnpm@9.0.0 install --frozen-lockfile");
    expect(first.stderr).toMatch(/\[build \+\d+\.\d+s\] backend: built dist\/index\.js/);
    expect(first.exitCode).toBe(0);
    const result = JSON.parse(first.stdout);
    expect(result.status).toBe("built");
    expect(result.pnpm).toBe("9.0.0");
    expect(result.steps.map((s: { name: string }) => s.name)).toEqual([
      "install",
      "build",
      "backend-deps",
      "assemble",
    ]);

    const files = allFiles(shared.appDir);
    for (const expected of [
      "package.json",
      "runtime/start.mjs",
      "runtime/secrets-preload.mjs",
      "runtime/telemetry.mjs",
      "metamcp/apps/backend/package.json",
      "metamcp/apps/backend/dist/index.js",
      "metamcp/apps/backend/drizzle/0000_init.sql",
      "metamcp/apps/backend/drizzle/meta/_journal.json",
      "metamcp/apps/backend/node_modules/@repo/shared/dist/index.js",
      "metamcp/apps/backend/node_modules/debug/src/index.js",
      "metamcp/apps/backend/node_modules/ms/index.js",
      "metamcp/apps/frontend/server.js",
      "metamcp/apps/frontend/.next/static/chunks/app.js",
      "metamcp/apps/frontend/public/favicon.svg",
      "metamcp/node_modules/ms/index.js",
      ".metamcp-databricks/manifest.json",
    ]) {
      expect(files).toContain(expected);
    }
    // Nothing the servers do not need, nothing a bundle sync would drop.
    expect(files.filter((f) => f.includes("(symlink)"))).toEqual([]);
    expect(files.filter((f) => f.endsWith(".map"))).toEqual([]);
    expect(
      files.filter((f) => /is-number|\.pnpm|\.next\/cache|\/test\/|\.git\/|(^|\/)\.env/.test(f)),
    ).toEqual([]);
    // Two versions of ms: the frontend's 2.1.3 and debug's 2.1.2, each where Node resolves it.
    expect(
      JSON.parse(readFileSync(path.join(shared.appDir, "metamcp/node_modules/ms/package.json"), "utf8"))
        .version,
    ).toBe("2.1.3");
    expect(
      JSON.parse(
        readFileSync(path.join(shared.appDir, "metamcp/apps/backend/node_modules/ms/package.json"), "utf8"),
      ).version,
    ).toBe("2.1.2");

    const pkg = JSON.parse(readFileSync(path.join(shared.appDir, "package.json"), "utf8"));
    expect(pkg.scripts).toEqual({ start: "node runtime/start.mjs" });
    expect(pkg.dependencies).toEqual({});
    expect(readFileSync(path.join(shared.appDir, "runtime/start.mjs"), "utf8")).toContain("runtime v1");
    expect(readFileSync(path.join(shared.appDir, "runtime/secrets-preload.mjs"), "utf8")).toContain(
      "preload v1",
    );

    const manifest = JSON.parse(
      readFileSync(path.join(shared.appDir, ".metamcp-databricks/manifest.json"), "utf8"),
    );
    expect(manifest.commit).toBe("0123456789abcdef0123456789abcdef01234567");
    expect(manifest.build.inputHash).toBe(result.inputHash);
    expect(manifest.build.tree).toMatchObject(result.tree);
    expect(manifest.build.tree.files).toBe(files.length - 1);
    expect(manifest.build.tree.largest.bytes).toBeGreaterThan(0);
    expect(JSON.stringify(manifest)).not.toMatch(/20\d\d-\d\d-\d\dT/);
  });

  it("starts with node alone from a copy in an empty directory", async () => {
    expect(first.exitCode).toBe(0);
    const copy = tempDir("mmdb-app-copy-");
    cpSync(shared.appDir, copy, { recursive: true });
    const backend = await startNode(path.join(copy, "metamcp/apps/backend"), "dist/index.js");
    const health = await fetch(`http://127.0.0.1:${backend.port}/metamcp/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok", greeting: "hello metamcp" });

    const frontend = await startNode(copy, "metamcp/apps/frontend/server.js");
    const base = `http://127.0.0.1:${frontend.port}`;
    expect((await fetch(`${base}/`)).status).toBe(200);
    expect(await (await fetch(`${base}/_next/static/chunks/app.js`)).text()).toContain("synthetic frontend");
    expect((await fetch(`${base}/favicon.svg`)).status).toBe(200);
  });

  it("is a no-op when nothing changed", async () => {
    expect(first.exitCode).toBe(0);
    const again = await build(shared);
    expect(again.exitCode).toBe(0);
    const result = JSON.parse(again.stdout);
    expect(result.status).toBe("up-to-date");
    expect(result.steps).toEqual([]);
    expect(result.tree).toEqual(JSON.parse(first.stdout).tree);
    expect(again.stderr).not.toContain("pnpm@9.0.0 install");

    // What a person sees (recorded in test/golden/build-noop.txt; UPDATE_GOLDEN=1 to refresh).
    const human = await runCli(
      [
        "build",
        "--build-dir",
        shared.buildDir,
        "--app-dir",
        shared.appDir,
        "--runtime-bundle",
        shared.runtime,
      ],
      { cwd: shared.root },
    );
    expect(human.exitCode).toBe(0);
    expectGolden(
      "build-noop",
      human.stdout
        .replaceAll(shared.root, "<tmp>")
        .replace(/(inputs\s+)[0-9a-f]{16}/, "$1<hash>")
        .replace(/(took\s+)\d+\.\ds/, "$1<seconds>"),
    );
  });

  it("re-assembles only when our runtime changes, and reinstalls when the prepared tree changes", async () => {
    expect(first.exitCode).toBe(0);
    const before = JSON.parse(first.stdout);
    // render/deploy writes app.yaml at the tree's root: a re-assembly keeps it.
    writeFileSync(path.join(shared.appDir, "app.yaml"), 'command: ["node", "runtime/start.mjs"]\n');
    writeFileSync(shared.runtime, 'console.log("metamcp-databricks runtime v2");\n');
    const runtimeOnly = await build(shared);
    expect(runtimeOnly.exitCode).toBe(0);
    const r1 = JSON.parse(runtimeOnly.stdout);
    expect(r1.status).toBe("built");
    expect(r1.inputHash).not.toBe(before.inputHash);
    expect(
      r1.steps.filter((s: { skipped?: string }) => !s.skipped).map((s: { name: string }) => s.name),
    ).toEqual(["assemble"]);
    expect(readFileSync(path.join(shared.appDir, "runtime/start.mjs"), "utf8")).toContain("runtime v2");
    expect(readFileSync(path.join(shared.appDir, "app.yaml"), "utf8")).toContain("runtime/start.mjs");
    expect(r1.tree.files).toBe(before.tree.files);

    // prepare ran again with another patch set: upstream is installed and built again.
    const manifestPath = path.join(shared.buildDir, ".metamcp-databricks/manifest.json");
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    const patches = [
      { id: "drizzle-schema", description: "tables into metamcp_app", files: [{ path: "x.ts", edits: 1 }] },
    ];
    writeFileSync(manifestPath, JSON.stringify({ ...manifest, patches }));
    const rebuilt = await build(shared);
    expect(rebuilt.exitCode).toBe(0);
    const r2 = JSON.parse(rebuilt.stdout);
    expect(
      r2.steps.filter((s: { skipped?: string }) => !s.skipped).map((s: { name: string }) => s.name),
    ).toEqual(["install", "build", "backend-deps", "assemble"]);
    expect(
      JSON.parse(readFileSync(path.join(shared.appDir, ".metamcp-databricks/manifest.json"), "utf8")).patches,
    ).toEqual(patches);
  });
});

describe("build guards", () => {
  it.skipIf(!registry)(
    "refuses a file of 10 MB or more, naming it, and keeps the previous tree",
    async () => {
      const f = makeFixture(tempDir("mmdb-build-big-"));
      const good = await build(f);
      expect(good.exitCode).toBe(0);
      const manifestPath = path.join(f.appDir, ".metamcp-databricks/manifest.json");
      const before = readFileSync(manifestPath, "utf8");

      writeFileSync(path.join(f.buildDir, "apps/frontend/public/big.bin"), Buffer.alloc(10 * 1024 * 1024, 1));
      // What an interrupted (Ctrl-C) build leaves beside the tree is cleaned up too.
      mkdirSync(`${f.appDir}.staging-1/metamcp`, { recursive: true });
      const r = await build(f, "--force");
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain("metamcp/apps/frontend/public/big.bin (10.0 MB)");
      expect(r.stderr).toContain("10 MB or more");
      expect(JSON.parse(r.stdout).error.code).toBe("app_tree_file_too_large");
      // The previous good tree is untouched and no staging folder is left behind.
      expect(readFileSync(manifestPath, "utf8")).toBe(before);
      expect(existsSync(path.join(f.appDir, "metamcp/apps/frontend/public/big.bin"))).toBe(false);
      expect(readdirSync(path.dirname(f.appDir)).filter((e) => e.startsWith("app."))).toEqual([]);
    },
  );

  it.skipIf(!registry)("refuses a forbidden file (a .env copied into Next's standalone output)", async () => {
    const f = makeFixture(tempDir("mmdb-build-env-"), {
      "apps/frontend/.env": "BETTER_AUTH_SECRET=s3cr3t\n",
    });
    const r = await build(f);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("metamcp/apps/frontend/.env (an environment file;");
    expect(JSON.parse(r.stdout).error.code).toBe("app_tree_forbidden_file");
    expect(existsSync(f.appDir)).toBe(false);
    expectGolden(
      "build-forbidden-env",
      r.stderr
        .split("\n")
        .filter((l) => l.startsWith("error:") || l.startsWith("  →"))
        .join("\n"),
    );
  });

  it.skipIf(!registry)(
    "reports a failed step with its exit code and the last 50 lines of its output",
    async () => {
      const f = makeFixture(tempDir("mmdb-build-fail-"), { "apps/backend/FAIL_BUILD": "" });
      const r = await build(f);
      expect(r.exitCode).toBe(3);
      const error = JSON.parse(r.stdout).error;
      expect(error.code).toBe("build_step_failed");
      expect(error.message).toMatch(
        /^step `build` failed with exit code [1-9]\d* after \d+\.\ds\. Last 50 lines:/,
      );
      expect(error.message).toContain("backend build error line 60");
      expect(error.message).toMatch(/backend build error line 20$/m);
      expect(error.message).not.toMatch(/backend build error line 1$/m);
      expect(r.stderr).toContain("error: step `build` failed");
    },
  );

  it("says to run prepare when there is no prepared tree", async () => {
    const root = tempDir("mmdb-build-none-");
    writeFileSync(path.join(root, "start.mjs"), "");
    const r = await runCli(
      ["build", "--build-dir", "nowhere", "--app-dir", "app", "--runtime-bundle", "start.mjs"],
      { cwd: root },
    );
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("no prepared MetaMCP tree");
    expect(r.stderr).toContain("metamcp-databricks prepare");
  });

  it("fails clearly when our runtime bundle is missing", async () => {
    const f = makeFixture(tempDir("mmdb-build-noruntime-"));
    rmSync(f.runtime);
    const r = await build(f);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("runtime bundle");
    expect(r.stderr).toContain("npm run build");
  });
});
