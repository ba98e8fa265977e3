import { statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Bench } from "./run.js";

/**
 * The size of the app's `runtime/start.mjs` (dist/runtime/start.mjs, built by `prebench`; goal ≤ 450 KB,
 * docs/runtime.md), and what each npm dependency costs in it: esbuild's metafile of the same bundle
 * (entry, format, target and externals as tsup.config.ts builds it), summed per package.
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const kb = (bytes: number) => Math.round(bytes / 102.4) / 10;

const bench: Bench = {
  name: "runtime-size",
  async run() {
    const metrics: Record<string, number> = {
      start_mjs_kb: kb(statSync(path.join(root, "dist/runtime/start.mjs")).size),
      // The OpenTelemetry SDK, loaded only when METAMCP_TELEMETRY is on (not part of start.mjs's budget).
      telemetry_mjs_kb: kb(statSync(path.join(root, "dist/runtime/telemetry.mjs")).size),
    };
    const r = await build({
      entryPoints: [path.join(root, "src/runtime/entry.ts")],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      external: ["pg-native"],
      metafile: true,
      write: false,
      outfile: path.join(root, ".bench/start.mjs"),
      logLevel: "silent",
    });
    const perPackage = new Map<string, number>();
    for (const output of Object.values(r.metafile.outputs))
      for (const [file, input] of Object.entries(output.inputs)) {
        const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file)?.[1] ?? "our code";
        perPackage.set(pkg, (perPackage.get(pkg) ?? 0) + input.bytesInOutput);
      }
    for (const [pkg, bytes] of [...perPackage].sort((a, b) => b[1] - a[1]))
      if (bytes >= 1024) metrics[`kb ${pkg}`] = kb(bytes);
    return metrics;
  },
};
export default bench;
