import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Bench } from "./run.js";
import { iterations } from "./smoke.js";

/**
 * How fast the light commands start, against a bare `node -e 0` measured in the same minute (the target:
 * within 4×). Each command's module loads its domain module lazily, so these never load the Databricks SDK,
 * embedded PostgreSQL, ts-morph or the MCP SDK. Median of 7 rounds, the commands interleaved so machine load
 * hits them alike; `local status` with nothing running (it answers "stopped", exit 5).
 */
const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../bin/metamcp-databricks.js");
const ROUNDS = iterations(7);

const CASES: Record<string, string[]> = {
  node_e0: ["-e", "0"],
  version: [BIN, "--version"],
  help: [BIN, "--help"],
  config: [BIN, "config"],
  local_status: [BIN, "local", "status"],
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)] ?? 0);
}

export default {
  name: "startup",
  async run() {
    const cwd = mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-startup-"));
    const env = {
      PATH: process.env.PATH,
      HOME: cwd,
      NO_COLOR: "1",
      LOCAL_STATE_DIR: path.join(cwd, "state"),
    };
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(CASES).map((k) => [k, []]));
    try {
      for (let round = 0; round < ROUNDS; round++) {
        for (const [name, args] of Object.entries(CASES)) {
          const t0 = performance.now();
          const r = spawnSync(process.execPath, args, { cwd, env, encoding: "utf8" });
          const ms = performance.now() - t0;
          const expected = name === "local_status" ? 5 : 0;
          if (r.status !== expected) throw new Error(`${args.join(" ")}: exit ${r.status}: ${r.stderr}`);
          times[name]!.push(ms);
        }
      }
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
    const node = median(times.node_e0!);
    const metrics: Record<string, number | string> = { node_e0_ms: node };
    for (const name of Object.keys(CASES).filter((n) => n !== "node_e0")) {
      const ms = median(times[name]!);
      metrics[`${name}_ms`] = ms;
      metrics[`${name}_x_node`] = `${(ms / node).toFixed(1)}× (target ≤ 4×)`;
    }
    return metrics;
  },
} satisfies Bench;
