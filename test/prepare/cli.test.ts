import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PrepareManifest } from "../../src/upstream/manifest.js";
import { runCli } from "../support/cli.js";
import { expectGolden } from "../support/golden.js";
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
    ]);
    expect(manifest.patches[0]?.counts).toEqual(TABLE_COUNTS["v2.2.0"]);
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

  it("refuses a shallow local source at once, saying how to make it whole (a partial fetch from it never ends)", async () => {
    const d = fresh();
    const shallow = path.join(d.cwd, "shallow.git");
    const source = upstream.url.startsWith("file://") ? upstream.url : `file://${upstream.url}`;
    execFileSync("git", ["clone", "--quiet", "--bare", "--depth", "1", source, shallow]);
    const r = await prepare(["--repo", `file://${shallow}`], d, false);
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toContain("is a shallow clone");
    expect(r.stderr).toContain("fetch --unshallow");
    expect(existsSync(d.buildDir)).toBe(false);
  });

  it("exits 2 for a ref that does not exist, listing the nearest tags", async () => {
    const d = fresh();
    const r = await prepare(["--repo", upstream.url, "--ref", "v2.2.1"], d, false);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(
      /error: ref "v2\.2\.1" is not a tag, branch or commit of .*; nearest tags: v2\.2\.0/,
    );
    expect(r.stderr).not.toContain("    at ");
    expect(existsSync(d.buildDir)).toBe(false);
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

  it("is a no-op when the tree is current: a tag decided without git, a branch after a fetch", async () => {
    const d = fresh();
    const first = await prepare(["--repo", upstream.url, "--ref", "v2.1.0"], d, false);
    expect(first.exitCode, first.stderr).toBe(0);
    writeFileSync(path.join(d.buildDir, "node_modules.marker"), "what build adds\n");

    const again = await prepare(["--repo", upstream.url, "--ref", "v2.1.0"], d, false);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toContain(
      `MetaMCP v2.1.0 (${upstream.tags["v2.1.0"]!.slice(0, 12)}) in ${d.buildDir} is current`,
    );
    expect(again.stderr).not.toContain("mirror"); // no git at all for a tag
    // Left alone: what build added is still there.
    expect(existsSync(path.join(d.buildDir, "node_modules.marker"))).toBe(true);

    // A prepared file changed by hand: prepared again.
    writeFileSync(path.join(d.buildDir, "apps/backend/drizzle.config.ts"), "// edited\n");
    const edited = await prepare(["--repo", upstream.url, "--ref", "v2.1.0"], d, false);
    expect(edited.exitCode, edited.stderr).toBe(0);
    expect(edited.stderr).toContain(
      "preparing again: the prepared tree differs (apps/backend/drizzle.config.ts was changed)",
    );
    expect(readFileSync(path.join(d.buildDir, "apps/backend/drizzle.config.ts"), "utf8")).not.toBe(
      "// edited\n",
    );

    // --force prepares again anyway; --json prints the same manifest either way.
    const forced = await prepare(["--repo", upstream.url, "--ref", "v2.1.0", "--force"], d);
    const noop = await prepare(["--repo", upstream.url, "--ref", "v2.1.0"], d);
    expect(forced.stderr).toContain("patch drizzle-schema");
    expect(noop.stdout).toBe(forced.stdout);
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

  it("prints a human summary without --json", async () => {
    const d = fresh();
    const r = await prepare(["--repo", upstream.url, "--schema", "tenant_a"], d, false);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `prepared MetaMCP v2.2.0 (${upstream.tags["v2.2.0"]!.slice(0, 12)}) in ${d.buildDir}`,
    );
    expect(r.stdout).toMatch(/patch +drizzle-schema +\d+ edit\(s\) in 1 file\(s\): 2 enums, 6 tables/);
    expect(readFileSync(path.join(d.buildDir, "apps/backend/drizzle.config.ts"), "utf8")).toContain(
      'migrations: { schema: "tenant_a" }',
    );
  });

  it("says what it does, step by step (recorded in test/golden/prepare-*.txt)", async () => {
    const d = fresh();
    const normalize = (text: string) =>
      text
        .replaceAll(d.cache, "<CACHE>")
        .replaceAll(d.buildDir, "<BUILD_DIR>")
        .replaceAll(upstream.dir, "<REPO>")
        .replace(/<CACHE>\/repos\/[^ )]+\.git/g, "<CACHE>/repos/<MIRROR>.git")
        .replace(/\b[0-9a-f]{40}\b/g, "<SHA>")
        .replace(/\b[0-9a-f]{12}\b/g, "<SHORT_SHA>")
        .replace(/\d+\.\ds\b/g, "<T>s");
    const ok = await prepare(["--repo", upstream.url], d, false);
    expect(ok.exitCode, ok.stderr).toBe(0);
    expectGolden(
      "prepare-default",
      normalize(`$ prepare --repo <REPO>\n--- stdout\n${ok.stdout}--- stderr\n${ok.stderr}`),
    );
    const missing = await prepare(["--repo", upstream.url, "--ref", "v2.9"], d, false);
    expect(missing.exitCode).toBe(2);
    expectGolden(
      "prepare-missing-ref",
      normalize(
        `$ prepare --repo <REPO> --ref v2.9\n--- stdout\n${missing.stdout}--- stderr\n${missing.stderr}`,
      ),
    );
  });
});
