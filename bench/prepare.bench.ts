import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createSyntheticUpstream, SYNTHETIC_GIT_ENV } from "../test/support/synthetic-upstream.js";
import { iterations } from "./smoke.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
/** BENCH_PREPARE_CLI=<other checkout>/bin/metamcp-databricks.js measures another build (before/after). */
const cli = process.env.BENCH_PREPARE_CLI ?? path.join(root, "bin/metamcp-databricks.js");
const RUNS = iterations(Number(process.env.BENCH_PREPARE_RUNS ?? 3));
/** Targets from issue 12: a cold prepare within 2× a plain shallow clone; a no-op prepare within 0.3 s. */
const COLD_TARGET = 2;
const NOOP_TARGET_MS = 300;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function timed(fn: () => void): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

interface Measured {
  node_start_ms: number;
  git_clone_depth1_ms: number;
  prepare_cold_ms: number;
  prepare_noop_ms: number;
  prepare_other_ref_ms: number;
}

/**
 * One repository, side by side in one loop so machine load hits every column alike: `node -e 0` (the floor
 * for any CLI), a plain `git clone --depth 1 --branch <ref>`, a cold prepare of the same ref (empty cache,
 * new build dir), a no-op prepare (same ref, tree current), and a prepare of another ref (warm cache).
 */
function measure(repo: string, ref: string, other: string, work: string): Measured {
  const env = { ...process.env, ...SYNTHETIC_GIT_ENV };
  const cloneUrl = /^[a-z]+:\/\//.test(repo) ? repo : `file://${path.resolve(repo)}`;
  const cols: Record<keyof Measured, number[]> = {
    node_start_ms: [],
    git_clone_depth1_ms: [],
    prepare_cold_ms: [],
    prepare_noop_ms: [],
    prepare_other_ref_ms: [],
  };
  for (let i = 0; i < RUNS; i++) {
    const dir = path.join(work, `run-${i}`);
    const prepare = (r: string) =>
      execFileSync(
        process.execPath,
        [cli, "prepare", "--repo", repo, "--ref", r, "--build-dir", path.join(dir, "build")],
        {
          env: { ...env, METAMCP_CACHE_DIR: path.join(dir, "cache") },
          stdio: ["ignore", "ignore", "pipe"],
        },
      );
    cols.node_start_ms.push(timed(() => execFileSync(process.execPath, ["-e", "0"])));
    cols.git_clone_depth1_ms.push(
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
    cols.prepare_cold_ms.push(timed(() => prepare(ref)));
    cols.prepare_noop_ms.push(timed(() => prepare(ref)));
    cols.prepare_other_ref_ms.push(timed(() => prepare(other)));
  }
  return Object.fromEntries(
    Object.entries(cols).map(([k, v]) => [k, Math.round(median(v))]),
  ) as unknown as Measured;
}

function report(prefix: string, m: Measured): Record<string, number | string> {
  const cold = Number((m.prepare_cold_ms / m.git_clone_depth1_ms).toFixed(2));
  const noop = Number((m.prepare_noop_ms / m.git_clone_depth1_ms).toFixed(2));
  return {
    [`${prefix}node_start_ms`]: m.node_start_ms,
    [`${prefix}git_clone_depth1_ms`]: m.git_clone_depth1_ms,
    [`${prefix}prepare_cold_ms`]: m.prepare_cold_ms,
    [`${prefix}prepare_cold_vs_clone`]: `${cold} (target <= ${COLD_TARGET}: ${cold <= COLD_TARGET ? "met" : "MISSED"})`,
    [`${prefix}prepare_noop_ms`]: `${m.prepare_noop_ms} (target <= ${NOOP_TARGET_MS}: ${m.prepare_noop_ms <= NOOP_TARGET_MS ? "met" : "MISSED"})`,
    [`${prefix}prepare_noop_vs_clone`]: noop,
    [`${prefix}prepare_noop_minus_node_start_ms`]: m.prepare_noop_ms - m.node_start_ms,
    [`${prefix}prepare_other_ref_ms`]: m.prepare_other_ref_ms,
  };
}

/**
 * `npm run bench -- prepare`: the synthetic repository always; with `BENCH_PREPARE_REPO=<path or URL>
 * [BENCH_PREPARE_REFS=<ref>,<other ref>]` also a real one (e.g. a clone of the MetaMCP mirror in /tmp with
 * `git config uploadpack.allowFilter true`, as GitHub allows partial clones). Medians of BENCH_PREPARE_RUNS.
 */
export default {
  name: "prepare",
  async run(): Promise<Record<string, number | string>> {
    const work = mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-prepare-"));
    try {
      const synthetic = createSyntheticUpstream({ dir: path.join(work, "upstream") });
      const out: Record<string, number | string> = { runs: RUNS };
      Object.assign(
        out,
        report("synthetic_", measure(synthetic.url, synthetic.latestStable, "v2.1.0", path.join(work, "s"))),
      );
      const external = process.env.BENCH_PREPARE_REPO;
      if (external) {
        const [ref = "v2.4.22", other = "v2.4.21"] = (process.env.BENCH_PREPARE_REFS ?? "")
          .split(",")
          .filter(Boolean);
        out.real_repo = `${external} (${ref}, then ${other})`;
        Object.assign(out, report("real_", measure(external, ref, other, path.join(work, "r"))));
      }
      return out;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
};
