import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrepareManifest } from "../../src/upstream/manifest.js";
import { runCli } from "../support/cli.js";
import {
  addUpstreamCommit,
  createSyntheticUpstream,
  type SyntheticUpstream,
  TABLE_COUNTS,
} from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * `prepare` end to end through the real CLI binary (built by `pretest`) on synthetic MetaMCP-shaped
 * repositories. Every run gets its own build dir; runs that share a cache dir show that it is reused.
 * What prepare says (step by step, the no-op and "preparing again" reasons, refusals) is recorded as
 * acceptance cases in test/acceptance/prepare/; these check what it does.
 */
describe("metamcp-databricks prepare", () => {
  let upstream: SyntheticUpstream;
  let fork: SyntheticUpstream;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
    fork = createSyntheticUpstream({ marker: "a fork of MetaMCP", defaultBranch: "develop" });
  });
  afterAll(() => {
    upstream?.cleanup();
    fork?.cleanup();
  });

  function prepare(args: string[], dirs: { cwd: string; cache: string }, json = true) {
    return runCli([...(json ? ["--json"] : []), "prepare", ...args], {
      cwd: dirs.cwd,
      env: { METAMCP_CACHE_DIR: dirs.cache },
      timeoutMs: 60_000,
    });
  }

  function fresh() {
    const cwd = tempDir();
    return { cwd, cache: path.join(cwd, ".cache"), buildDir: path.join(cwd, "build/metamcp") };
  }

  function readTree(dir: string): Record<string, string> {
    const out: Record<string, string> = {};
    const walk = (rel: string) => {
      for (const e of readdirSync(path.join(dir, rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) walk(r);
        else out[r] = readFileSync(path.join(dir, r), "utf8");
      }
    };
    walk("");
    return out;
  }

  it("defaults to the newest stable release on the default branch, says why, and prints the manifest", async () => {
    const d = fresh();
    const r = await prepare(["--repo", upstream.url], d);
    expect(r.exitCode, r.stderr).toBe(0);
    const manifest = JSON.parse(r.stdout) as PrepareManifest;
    expect(manifest).toMatchObject({
      repoUrl: upstream.dir,
      requestedRef: "",
      resolvedRef: "v2.2.0",
      refKind: "release",
      commit: upstream.tags["v2.2.0"],
      schema: "metamcp_app",
    });
    expect(manifest.patches.map((p) => p.id)).toEqual([
      "drizzle-schema",
      "sql-migrations",
      "drizzle-config",
      "db-pool-credentials",
      "backend-loopback",
      "frontend-backend-port",
      "databricks-identity",
      "stdio-servers",
      "server-env",
      "next-tracing-root",
      "next-disk-cache",
      "endpoint-server-default",
      "endpoint-identity",
      "databricks-tools",
    ]);
    expect(manifest.patches[0]?.counts).toEqual(TABLE_COUNTS["v2.2.0"]);
    // Our identity module came from overlay/ and auth.ts imports it (docs/identity.md).
    expect(manifest.overlay).toEqual([
      "apps/backend/src/databricks-endpoint-identity.ts",
      "apps/backend/src/databricks-identity.ts",
      "apps/backend/src/databricks-tools.ts",
    ]);
    expect(readFileSync(path.join(d.buildDir, "apps/backend/src/auth.ts"), "utf8")).toContain(
      "bindDatabricksIdentity(betterAuth(",
    );
    expect(manifest.patches[0]?.files).toEqual([
      { path: "apps/backend/src/db/schema.ts", edits: expect.any(Number) },
    ]);
    // Why: the side-line and suffixed tags above it are named.
    expect(r.stderr).toContain("using v2.2.0");
    expect(r.stderr).toContain("v2.4.0 (not on main)");
    expect(r.stderr).toContain("v2.3.0-test (pre-release or suffixed tag)");
    // The tree: patched, no .git, the manifest on disk equals stdout.
    expect(existsSync(path.join(d.buildDir, ".git"))).toBe(false);
    expect(
      JSON.parse(readFileSync(path.join(d.buildDir, ".metamcp-databricks/manifest.json"), "utf8")),
    ).toEqual(manifest);
    const schemaTs = readFileSync(path.join(d.buildDir, "apps/backend/src/db/schema.ts"), "utf8");
    expect(schemaTs).toContain('export const metamcpAppSchema = pgSchema("metamcp_app");');
    expect(schemaTs).not.toMatch(/\bpgTable\(/);
    const sql = readFileSync(path.join(d.buildDir, "apps/backend/drizzle/0000_first_steps.sql"), "utf8");
    expect(sql).not.toContain('"public".');
    expect(sql).toContain('REFERENCES "metamcp_app"."users"("id")');
  });

  it("takes a tag, a branch, a full and a short SHA; the second ref comes from the cache", async () => {
    const d = fresh();
    const first = await prepare(["--repo", upstream.url, "--ref", "v2.0.0"], d);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).patches[0].counts).toEqual(TABLE_COUNTS["v2.0.0"]);
    expect(first.stderr).toContain("cloning");

    const branch = await prepare(["--repo", upstream.url, "--ref", "docker-per-mcp"], d);
    expect(branch.exitCode, branch.stderr).toBe(0);
    expect(branch.stderr).not.toContain("cloning");
    expect(branch.stderr).toContain("updating the cached mirror");
    expect(JSON.parse(branch.stdout)).toMatchObject({
      resolvedRef: "docker-per-mcp",
      refKind: "branch",
      commit: upstream.commits.sideHead,
    });
    expect(JSON.parse(branch.stdout).patches[0].counts).toEqual(TABLE_COUNTS["v2.4.1-docker-per-mcp"]);

    const sha = upstream.commits.commitOnly;
    for (const ref of [sha, sha.slice(0, 7)]) {
      const r = await prepare(["--repo", upstream.url, "--ref", ref], d);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        requestedRef: ref,
        resolvedRef: sha,
        refKind: "commit",
        commit: sha,
      });
      expect(JSON.parse(r.stdout).patches[0].counts).toEqual(TABLE_COUNTS["commit-only"]);
    }
    // One mirror in the cache for all of them.
    expect(readdirSync(path.join(d.cache, "repos")).filter((f) => f.endsWith(".git"))).toHaveLength(1);
  });

  it("works with a fork by file:// URL (its own default branch and files)", async () => {
    const d = fresh();
    const r = await prepare(["--repo", fork.fileUrl], d);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ repoUrl: fork.fileUrl, resolvedRef: "v2.2.0" });
    expect(r.stderr).toContain("on develop");
    expect(readFileSync(path.join(d.buildDir, "FORK.md"), "utf8")).toBe("a fork of MetaMCP\n");
  });

  it("reads the repository, ref, schema and build dir from the environment / .env like every command", async () => {
    const d = fresh();
    writeFileSync(path.join(d.cwd, ".env"), "METAMCP_DB_SCHEMA=from_dotenv\nBUILD_DIR=out/tree\n");
    const r = await runCli(["--json", "prepare"], {
      cwd: d.cwd,
      env: { METAMCP_CACHE_DIR: d.cache, METAMCP_REPO_URL: upstream.url, METAMCP_REF: "v2.1.0" },
      timeoutMs: 60_000,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      requestedRef: "v2.1.0",
      refKind: "tag",
      schema: "from_dotenv",
    });
    expect(existsSync(path.join(d.cwd, "out/tree/.metamcp-databricks/manifest.json"))).toBe(true);
  });

  it("is idempotent: preparing twice gives the same tree, byte for byte", async () => {
    const d = fresh();
    const a = await prepare(["--repo", upstream.url, "--ref", "v2.1.0"], d);
    expect(a.exitCode, a.stderr).toBe(0);
    const first = readTree(d.buildDir);
    // --force: made again from scratch (without it the second run is a no-op).
    const b = await prepare(["--repo", upstream.url, "--ref", "v2.1.0", "--force"], d);
    expect(b.exitCode, b.stderr).toBe(0);
    expect(b.stderr).toContain("patch drizzle-schema");
    expect(readTree(d.buildDir)).toEqual(first);
    expect(b.stdout).toBe(a.stdout);
  });

  it("a branch is current only while its head has not moved", async () => {
    const moving = createSyntheticUpstream();
    try {
      const d = fresh();
      const first = await prepare(["--repo", moving.url, "--ref", "main"], d);
      expect(first.exitCode, first.stderr).toBe(0);
      const same = await prepare(["--repo", moving.url, "--ref", "main"], d, false);
      expect(same.stderr).toContain("updating the cached mirror");
      expect(same.stdout).toContain("is current: nothing to do");
      const next = addUpstreamCommit(moving, { "NEW.md": "new\n" }, "a new commit");
      const moved = await prepare(["--repo", moving.url, "--ref", "main"], d);
      expect(moved.exitCode, moved.stderr).toBe(0);
      expect(JSON.parse(moved.stdout).commit).toBe(next);
      expect(readFileSync(path.join(d.buildDir, "NEW.md"), "utf8")).toBe("new\n");
    } finally {
      moving.cleanup();
    }
  });

  it("exits 3 on upstream drift, naming the file, and leaves the previous tree untouched", async () => {
    const d = fresh();
    const good = await prepare(["--repo", upstream.url, "--ref", "v2.2.0"], d);
    expect(good.exitCode, good.stderr).toBe(0);
    writeFileSync(path.join(d.buildDir, "LOCAL-NOTE.txt"), "still here\n");
    const before = readTree(d.buildDir);

    // A "MetaMCP" whose schema has no tables any more.
    const drifted = createSyntheticUpstream({
      extraFiles: () => ({
        "apps/backend/src/db/schema.ts": 'import { text } from "drizzle-orm/pg-core";\n',
      }),
    });
    try {
      const r = await prepare(["--repo", drifted.url, "--ref", "v2.2.0"], d, false);
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toContain("upstream drift in apps/backend/src/db/schema.ts");
      expect(r.stderr).toContain("v2.2.0");
      expect(r.stderr).toContain(`the previous tree at ${d.buildDir} is untouched`);
    } finally {
      drifted.cleanup();
    }
    expect(readTree(d.buildDir)).toEqual(before);
    // No temp dirs left beside it.
    expect(readdirSync(path.dirname(d.buildDir))).toEqual(["metamcp"]);
  });
});
