import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, PROJECT_ROOT, runCli } from "../support/cli.js";
import { createSyntheticUpstream, type SyntheticUpstream } from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * `prepare` never loses a user's data: it replaces only a build dir that is empty or one it made, and when
 * the filesystem says no it exits 2 saying truly where the previous tree is.
 */
describe("prepare keeps the user's data", () => {
  let upstream: SyntheticUpstream;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
  });
  afterAll(() => upstream?.cleanup());

  const prepare = (cwd: string, args: string[], env: Record<string, string> = {}) =>
    runCli(["prepare", "--repo", upstream.url, "--ref", "v2.1.0", ...args], {
      cwd,
      env: { METAMCP_CACHE_DIR: path.join(cwd, ".cache"), ...env },
      timeoutMs: 60_000,
    });

  it("refuses `--build-dir .` (a folder of the user's) with exit 2 and deletes nothing", async () => {
    const cwd = tempDir();
    writeFileSync(path.join(cwd, "notes.txt"), "mine\n");
    mkdirSync(path.join(cwd, "src"));
    writeFileSync(path.join(cwd, "src/index.ts"), "export {};\n");
    const r = await prepare(cwd, ["--build-dir", "."]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`error: refusing to replace ${cwd}: it is not empty`);
    expect(r.stderr).toContain("holds no .metamcp-databricks/manifest.json");
    expect(r.stderr).toContain("→ pass --build-dir (or set BUILD_DIR) to a new or empty directory");
    expect(readFileSync(path.join(cwd, "notes.txt"), "utf8")).toBe("mine\n");
    expect(readFileSync(path.join(cwd, "src/index.ts"), "utf8")).toBe("export {};\n");
    expect(r.stderr).not.toContain("cloning"); // refused before any work
  });

  it("refuses BUILD_DIR=build holding an earlier layout's build/app and databricks.yml", async () => {
    const cwd = tempDir();
    mkdirSync(path.join(cwd, "build/app"), { recursive: true });
    writeFileSync(path.join(cwd, "build/app/app.yaml"), "command: [node]\n");
    writeFileSync(path.join(cwd, "build/databricks.yml"), "bundle: {name: x}\n");
    const r = await runCli(["--json", "prepare", "--repo", upstream.url], {
      cwd,
      env: { METAMCP_CACHE_DIR: path.join(cwd, ".cache"), BUILD_DIR: "build" },
      timeoutMs: 60_000,
    });
    expect(r.exitCode).toBe(2);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: "build_dir_not_ours",
      message: expect.stringContaining("it holds app and databricks.yml"),
    });
    expect(readFileSync(path.join(cwd, "build/app/app.yaml"), "utf8")).toBe("command: [node]\n");
    expect(readFileSync(path.join(cwd, "build/databricks.yml"), "utf8")).toBe("bundle: {name: x}\n");
  });

  it("refuses a file; fills an empty directory; replaces its own tree", async () => {
    const cwd = tempDir();
    writeFileSync(path.join(cwd, "file"), "x");
    const file = await prepare(cwd, ["--build-dir", "file"]);
    expect(file.exitCode).toBe(2);
    expect(file.stderr).toContain("it is a file, not a directory");

    mkdirSync(path.join(cwd, "empty"));
    const empty = await prepare(cwd, ["--build-dir", "empty"]);
    expect(empty.exitCode, empty.stderr).toBe(0);
    expect(existsSync(path.join(cwd, "empty/.metamcp-databricks/manifest.json"))).toBe(true);
    const again = await prepare(cwd, ["--build-dir", "empty", "--force"]);
    expect(again.exitCode, again.stderr).toBe(0);
  });

  it("removes work trees and aside-moved trees of dead runs, and keeps a live run's and foreign names", async () => {
    const cwd = tempDir();
    const parent = path.join(cwd, "build");
    mkdirSync(parent);
    const host = os.hostname().replace(/[^A-Za-z0-9.-]/g, "_");
    // A pid that surely ran and is gone.
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid;
    const leftovers = {
      deadWork: `.metamcp.prepare-${dead}-${host}-0a1b2c3d`,
      deadIndex: `.metamcp.prepare-${dead}-${host}-0a1b2c3d.index`,
      deadOld: `.metamcp.old-${dead}-${host}-4e5f6a7b`,
      legacy: ".metamcp.prepare-Ab12Cd",
      liveWork: `.metamcp.prepare-${process.pid}-${host}-89abcdef`,
      otherHost: `.metamcp.prepare-${dead}-elsewhere.example-12345678`,
      foreign: ".metamcp.prepare-notes",
    };
    for (const [key, name] of Object.entries(leftovers)) {
      const p = path.join(parent, name);
      if (key === "deadIndex") writeFileSync(p, "index");
      else {
        mkdirSync(path.join(p, "apps"), { recursive: true });
        writeFileSync(path.join(p, "apps/big.bin"), "x".repeat(1000));
      }
    }
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(path.join(parent, leftovers.legacy), hourAgo, hourAgo);
    const r = await prepare(cwd, ["--build-dir", "build/metamcp"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readdirSync(parent).sort()).toEqual(
      ["metamcp", leftovers.liveWork, leftovers.otherHost, leftovers.foreign].sort(),
    );
    expect(r.stderr).toContain(
      `removed ${path.join(parent, leftovers.deadWork)}, left by an interrupted prepare`,
    );
  });
});

/**
 * Permission failures need a user the filesystem refuses: as root, the CLI runs as `nobody` (setpriv);
 * otherwise as the current user with the same modes.
 */
const asRoot = process.getuid?.() === 0;
const setpriv = asRoot ? spawnSync("setpriv", ["--version"]).status === 0 : true;
const NOBODY = 65534;

describe.skipIf(!setpriv)(
  "prepare where the filesystem refuses (skipped: needs setpriv when run as root)",
  () => {
    let upstream: SyntheticUpstream;
    beforeAll(() => {
      upstream = createSyntheticUpstream();
      chmodSync(upstream.dir, 0o755);
    });
    afterAll(() => upstream?.cleanup());

    /** A world-readable temp dir, and a home for the unprivileged user where git trusts the root-owned upstream. */
    function setup() {
      const dir = tempDir();
      chmodSync(dir, 0o755);
      const home = path.join(dir, "home");
      mkdirSync(home);
      writeFileSync(path.join(home, ".gitconfig"), "[safe]\n\tdirectory = *\n");
      const cache = path.join(dir, "cache");
      mkdirSync(cache);
      if (asRoot) for (const d of [home, cache]) chownSync(d, NOBODY, NOBODY);
      return { dir, home, cache };
    }

    async function prepareAs(s: ReturnType<typeof setup>, buildDir: string, extra: string[] = []) {
      const args = [
        CLI_BIN,
        "prepare",
        "--repo",
        upstream.dir,
        "--ref",
        "v2.1.0",
        "--build-dir",
        buildDir,
        ...extra,
      ];
      const [cmd, argv] = asRoot
        ? ["setpriv", [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, "--clear-groups", process.execPath, ...args]]
        : [process.execPath, args];
      const r = await execa(cmd as string, argv as string[], {
        cwd: PROJECT_ROOT,
        env: { PATH: process.env.PATH, HOME: s.home, METAMCP_CACHE_DIR: s.cache, NO_COLOR: "1" },
        extendEnv: false,
        reject: false,
        timeout: 60_000,
      });
      return { exitCode: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
    }

    it("a read-only parent: exit 2, no stack, and it says nothing was written / the previous tree remains", async () => {
      const s = setup();
      const parent = path.join(s.dir, "ro");
      mkdirSync(parent);
      const fresh = await prepareAs(s, path.join(parent, "metamcp"));
      // Only now read-only (as root, root-owned 0755 is already read-only for nobody).
      if (!asRoot) chmodSync(parent, 0o555);
      const first = asRoot ? fresh : await prepareAs(s, path.join(parent, "metamcp"));
      expect(first.exitCode).toBe(2);
      expect(first.stderr).toContain(
        `error: cannot write beside ${path.join(parent, "metamcp")}: ${parent} is not writable`,
      );
      expect(first.stderr).toContain("nothing was written");
      expect(first.stderr).not.toContain("    at ");

      // With a previous tree (prepared while the parent was writable).
      if (!asRoot) chmodSync(parent, 0o755);
      const seeded = await runCli(
        ["prepare", "--repo", upstream.dir, "--ref", "v2.0.0", "--build-dir", "metamcp"],
        {
          cwd: parent,
          env: { METAMCP_CACHE_DIR: path.join(s.dir, "root-cache") },
          timeoutMs: 60_000,
        },
      );
      expect(seeded.exitCode, seeded.stderr).toBe(0);
      const before = readFileSync(path.join(parent, "metamcp/.metamcp-databricks/manifest.json"), "utf8");
      if (!asRoot) chmodSync(parent, 0o555);
      const second = await prepareAs(s, path.join(parent, "metamcp"));
      if (!asRoot) chmodSync(parent, 0o755);
      expect(second.exitCode).toBe(2);
      expect(second.stderr).toContain(
        `the previous tree at ${path.join(parent, "metamcp")} remains as it was`,
      );
      expect(readFileSync(path.join(parent, "metamcp/.metamcp-databricks/manifest.json"), "utf8")).toBe(
        before,
      );
    });

    it("an old tree that cannot be deleted: exit 2, the new tree in place, the old one's place named", async () => {
      const s = setup();
      const parent = path.join(s.dir, "rw");
      mkdirSync(parent);
      if (asRoot) chownSync(parent, NOBODY, NOBODY);
      const buildDir = path.join(parent, "metamcp");
      const first = await prepareAs(s, buildDir, ["--force"]);
      expect(first.exitCode, first.stderr).toBe(0);
      // Something inside the old tree the user cannot delete: a read-only folder with a file (root's, as root).
      const stuck = path.join(buildDir, "apps/stuck");
      mkdirSync(stuck);
      writeFileSync(path.join(stuck, "file"), "x");
      if (asRoot) execFileSync("chown", ["-R", "root:root", stuck]);
      chmodSync(stuck, 0o555);
      try {
        const r = await prepareAs(s, buildDir, ["--force"]);
        expect(r.exitCode).toBe(2);
        expect(r.stderr).toMatch(
          new RegExp(
            `error: the new tree is in place at ${buildDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}, but the previous tree, moved to \\S+\\.metamcp\\.old-\\S+, could not be deleted \\(EACCES`,
          ),
        );
        expect(r.stderr).not.toContain("untouched");
        expect(r.stderr).not.toContain("    at ");
        // True: the new tree is there (no stuck folder in it), the old one beside it.
        expect(existsSync(path.join(buildDir, ".metamcp-databricks/manifest.json"))).toBe(true);
        expect(existsSync(path.join(buildDir, "apps/stuck"))).toBe(false);
        const old = readdirSync(parent).filter((n) => n.startsWith(".metamcp.old-"));
        expect(old).toHaveLength(1);
        expect(existsSync(path.join(parent, old[0]!, "apps/stuck/file"))).toBe(true);
      } finally {
        for (const n of readdirSync(parent)) {
          const p = path.join(parent, n, "apps/stuck");
          if (existsSync(p)) chmodSync(p, 0o755);
        }
      }
    });
  },
);
