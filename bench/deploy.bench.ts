import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startDatabricksWorld } from "../test/support/databricks-world.js";
import type { Bench } from "./run.js";
import { iterations } from "./smoke.js";

/**
 * The Databricks-side commands against the workspace emulator and the CLI double (the Databricks
 * parts themselves are stand-ins, so this measures our own overhead: process start, SDK auth, the
 * CLI calls we make, polling). Wall time of each command as a user runs it, median of 3; the first
 * deploy (an empty workspace) once. `app_deploy_ms_poll_100ms` ships a new build; `app_deploy_unchanged_ms`
 * is app-deploy right after a bundle-deploy that already deployed the tree.
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
      // The first deploy on an empty workspace (secret, app created stopped, URL, started with its code).
      world.double.clearCalls();
      const firstBundle = await timed(["bundle-deploy"]);
      const firstCalls = world.double.calls().length;
      const render: number[] = [];
      const doctor: number[] = [];
      const bundle: number[] = [];
      const deploy: number[] = [];
      const unchanged: number[] = [];
      const health: number[] = [];
      const status: number[] = [];
      let cliCalls = 0;
      for (let i = 0; i < iterations(3); i++) {
        render.push(await timed(["render", "--out", path.join(root, "review")]));
        doctor.push(await timed(["doctor"]));
        world.double.clearCalls();
        bundle.push(await timed(["bundle-deploy"]));
        cliCalls = world.double.calls().length;
        // The tree the bundle deployed already runs: app-deploy ships nothing.
        unchanged.push(await timed(["app-deploy", "--poll", "0.1"]));
        // A new build: app-deploy syncs it and deploys a SNAPSHOT.
        writeFileSync(path.join(world.project, "build/app/runtime/start.mjs"), `// build ${i}\n`);
        deploy.push(await timed(["app-deploy", "--poll", "0.1"]));
        health.push(await timed(["app-health"]));
        status.push(await timed(["app-status"]));
      }
      return {
        render_ms: median(render),
        doctor_ms: median(doctor),
        first_bundle_deploy_ms: Math.round(firstBundle),
        cli_calls_first_bundle_deploy: firstCalls,
        bundle_deploy_ms: median(bundle),
        cli_calls_per_bundle_deploy: cliCalls,
        app_deploy_ms_poll_100ms: median(deploy),
        app_deploy_unchanged_ms: median(unchanged),
        app_health_ms: median(health),
        app_status_ms: median(status),
      };
    } finally {
      await world.close();
      rmSync(root, { recursive: true, force: true });
    }
  },
} satisfies Bench;
