import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "../src/local/postgres.js";
import { runCli } from "../test/support/cli.js";
import { createFakeAppTree, freeInternalPorts } from "../test/support/fake-app-tree.js";

/**
 * `local up --detach` (app tree already built) to healthy through the local Apps proxy, and the
 * cold-start split by step, read from the runtime's own step lines in the local log.
 * Two runs: the first migrates an empty database, the second finds it current.
 */
function stepDurations(log: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of log.split("\n")) {
    const m = /"msg":"(.+?): done in (\d+) ms"/.exec(line);
    if (m?.[1] && m[2]) out[m[1].replace(/ \(.*\)$/, "")] = Number(m[2]);
  }
  return out;
}

export default {
  name: "local",
  async run(): Promise<Record<string, number | string>> {
    const work = mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-local-"));
    chmodSync(work, 0o755);
    // Free internal ports: the bench runs beside `make local` and the suite.
    const internal = await freeInternalPorts();
    const env = {
      APP_DIR: path.join(work, "app"),
      LOCAL_STATE_DIR: path.join(work, "state"),
      ...internal.env,
    };
    createFakeAppTree(env.APP_DIR, { backendPort: internal.backendPort });
    const metrics: Record<string, number | string> = {};
    try {
      const port = String(await freePort());
      for (const run of ["cold", "warm"]) {
        const t0 = performance.now();
        const up = await runCli(["--json", "local", "up", "--detach", "--no-build", "--port", port], {
          cwd: work,
          env,
        });
        if (up.exitCode !== 0) throw new Error(`local up failed: ${up.stderr}`);
        metrics[`${run}_up_to_healthy_ms`] = Math.round(performance.now() - t0);
        const steps = stepDurations(
          readFileSync(path.join(env.LOCAL_STATE_DIR, "local.log"), "utf8")
            .split("MetaMCP is ready")
            .at(-2) ?? "",
        );
        for (const [k, v] of Object.entries(steps)) metrics[`${run}_step_${k.replace(/\W+/g, "_")}_ms`] = v;
        await runCli(["local", "down"], { cwd: work, env });
      }
    } finally {
      await runCli(["local", "down"], { cwd: work, env });
      rmSync(work, { recursive: true, force: true });
    }
    return metrics;
  },
};
