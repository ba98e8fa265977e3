import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { silentLogger } from "../src/log/logger.js";
import { applyPatches, DiskTree, PATCHES } from "../src/patches/index.js";
import { exportCommit } from "../src/upstream/checkout.js";
import { prepareUpstream } from "../src/upstream/prepare.js";
import { createSyntheticUpstream, SYNTHETIC_GIT_ENV } from "../test/support/synthetic-upstream.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(root, "bin/metamcp-databricks.js");
const RUNS = 3;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timed(fn: () => void): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

/**
 * `prepare` (the real CLI, as a user runs it) against a plain `git clone --depth 1` of the same ref of the
 * same synthetic repository, in the same run: a first prepare (empty cache), a second prepare of another
 * ref (warm cache), and the patches alone. Medians of RUNS runs.
 */
export default {
  name: "prepare",
  async run(): Promise<Record<string, number | string>> {
    const work = mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-prepare-"));
    const env = { ...process.env, ...SYNTHETIC_GIT_ENV };
    // BENCH_PREPARE_REPO=<path or URL> [BENCH_PREPARE_REFS=<ref>,<other ref>] measures another repository.
    const external = process.env.BENCH_PREPARE_REPO;
    const synthetic = external ? undefined : createSyntheticUpstream({ dir: path.join(work, "upstream") });
    const repo = external ?? synthetic!.url;
    const [ref = synthetic?.latestStable ?? "", other = "v2.1.0"] = (process.env.BENCH_PREPARE_REFS ?? "")
      .split(",")
      .filter(Boolean);
    const cloneUrl = /^[a-z]+:\/\//.test(repo) ? repo : `file://${path.resolve(repo)}`;
    try {
      const startup: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        startup.push(timed(() => execFileSync(process.execPath, [cli, "--version"], { stdio: "ignore" })));
      }
      const clone: number[] = [];
      const cold: number[] = [];
      const warm: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const dir = path.join(work, `run-${i}`);
        clone.push(
          timed(() =>
            execFileSync(
              "git",
              [
                "-c",
                "advice.detachedHead=false",
                "clone",
                "--quiet",
                "--depth",
                "1",
                "--branch",
                ref,
                cloneUrl,
                path.join(dir, "clone"),
              ],
              { env, stdio: "ignore" },
            ),
          ),
        );
        const prepare = (r: string) =>
          execFileSync(
            process.execPath,
            [cli, "prepare", "--repo", repo, "--ref", r, "--build-dir", path.join(dir, "build")],
            {
              env: { ...env, METAMCP_CACHE_DIR: path.join(dir, "cache") },
              stdio: ["ignore", "ignore", "pipe"],
            },
          );
        cold.push(timed(() => prepare(ref)));
        warm.push(timed(() => prepare(other)));
      }

      // Patches alone, in process, on a fresh checkout each time.
      const mirror = path.join(work, "run-0/cache/repos");
      const gitDir = path.join(
        mirror,
        execFileSync("ls", [mirror], { encoding: "utf8" }).trim().split("\n")[0]!,
      );
      const patch: number[] = [];
      for (let i = 0; i < RUNS; i++) {
        const tree = mkdtempSync(path.join(work, "patch-"));
        const commit = execFileSync("git", ["--git-dir", gitDir, "rev-parse", `${ref}^{commit}`], {
          encoding: "utf8",
        }).trim();
        await exportCommit(gitDir, commit, tree);
        patch.push(
          timed(() => applyPatches(new DiskTree(tree), PATCHES, { schema: "metamcp_app", upstreamRef: ref })),
        );
      }
      // And the library call without the CLI's process start, for scale.
      const lib = performance.now();
      await prepareUpstream({
        repoUrl: repo,
        ref,
        buildDir: path.join(work, "lib/build"),
        schema: "metamcp_app",
        cacheDir: path.join(work, "run-0/cache"),
        overlayDir: path.join(root, "overlay"),
        toolVersion: "bench",
        log: silentLogger,
      });
      const libMs = performance.now() - lib;

      const c = median(clone);
      const r = (n: number) => Math.round(n);
      return {
        repo: external ? repo : "synthetic",
        refs: `${ref}, then ${other}`,
        runs: RUNS,
        cli_startup_ms: r(median(startup)),
        git_clone_depth1_ms: r(c),
        prepare_cold_ms: r(median(cold)),
        prepare_cold_vs_clone: Number((median(cold) / c).toFixed(2)),
        prepare_warm_other_ref_ms: r(median(warm)),
        prepare_warm_vs_clone: Number((median(warm) / c).toFixed(2)),
        patches_only_ms: r(median(patch)),
        prepare_in_process_warm_ms: r(libMs),
      };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
