import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startDatabricksWorld } from "../test/support/databricks-world.js";
import type { Bench } from "./run.js";

/**
 * The Databricks-side commands against the workspace emulator and the CLI double (the Databricks
 * parts themselves are stand-ins, so this measures our own overhead: process start, SDK auth, the
 * CLI calls we make, polling). Wall time of each command as a user runs it, median of 3.
 */
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)] ?? 0);
}

export default {
  name: "deploy",
  async run() {
    const root = mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-deploy-"));
    const world = await startDatabricksWorld(root);
    const timed = async (args: string[]) => {
      const t0 = performance.now();
      const r = await world.run(args);
      if (r.exitCode !== 0) throw new Error(`${args.join(" ")} failed: ${r.stderr}`);
      return performance.now() - t0;
    };
    try {
      const render: number[] = [];
      const doctor: number[] = [];
      const bundle: number[] = [];
      const deploy: number[] = [];
      const health: number[] = [];
      const status: number[] = [];
      let cliCalls = 0;
      for (let i = 0; i < 3; i++) {
        render.push(await timed(["render", "--out", path.join(root, "review")]));
        doctor.push(await timed(["doctor"]));
        world.double.clearCalls();
        bundle.push(await timed(["bundle-deploy"]));
        cliCalls = world.double.calls().length;
        deploy.push(await timed(["app-deploy", "--poll", "0.1"]));
        health.push(await timed(["app-health"]));
        status.push(await timed(["app-status"]));
      }
      return {
        render_ms: median(render),
        doctor_ms: median(doctor),
        bundle_deploy_ms: median(bundle),
        cli_calls_per_bundle_deploy: cliCalls,
        app_deploy_ms_poll_100ms: median(deploy),
        app_health_ms: median(health),
        app_status_ms: median(status),
      };
    } finally {
      await world.close();
      rmSync(root, { recursive: true, force: true });
    }
  },
} satisfies Bench;
