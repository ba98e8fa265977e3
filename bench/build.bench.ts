import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { writePreparedTree } from "../test/support/synthetic-app.js";

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const cli = path.join(root, "bin/metamcp-databricks.js");

interface BuildJson {
  status: string;
  tree: { files: number; bytes: number; largest: { path: string; bytes: number } };
}

async function timedBuild(args: string[], cwd: string): Promise<{ ms: number; result: BuildJson }> {
  const start = performance.now();
  const { stdout } = await run(process.execPath, [cli, "--json", "build", ...args], {
    cwd,
    maxBuffer: 64 * 1024 * 1024,
  });
  return { ms: Math.round(performance.now() - start), result: JSON.parse(stdout) as BuildJson };
}

/** `build` on the synthetic MetaMCP-shaped workspace: first build, no-op rebuild (target < 2 s), tree size. */
export default {
  name: "build",
  async run(): Promise<Record<string, number | string>> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mmdb-bench-build-"));
    try {
      const buildDir = path.join(dir, "build/metamcp");
      const appDir = path.join(dir, "build/app");
      writePreparedTree(buildDir);
      const ours = path.join(root, "dist/runtime/start.mjs");
      const runtime = existsSync(ours) ? ours : path.join(dir, "start.mjs");
      if (!existsSync(ours)) writeFileSync(runtime, "export {};\n");
      const args = ["--build-dir", buildDir, "--app-dir", appDir, "--runtime-bundle", runtime];
      const first = await timedBuild(args, dir);
      const noop = await timedBuild(args, dir);
      if (noop.result.status !== "up-to-date")
        throw new Error(`second build was not a no-op: ${noop.result.status}`);
      return {
        build_ms: first.ms,
        noop_rebuild_ms: noop.ms,
        app_tree_files: first.result.tree.files,
        app_tree_bytes: first.result.tree.bytes,
        largest_file: first.result.tree.largest.path,
        largest_file_bytes: first.result.tree.largest.bytes,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
