import path from "node:path";
import type { Command } from "commander";
import type { BuildAppResult } from "../build/build-app.js";
import { RUNTIME_BUNDLE_PATH } from "../build/locations.js";
import { action } from "./common.js";

function size(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${bytes} B`;
}

function describe(r: BuildAppResult): string {
  const steps = r.steps
    .map(
      (s) =>
        `  ${s.name.padEnd(13)} ${s.skipped ? `skipped (${s.skipped})` : `${(s.durationMs / 1000).toFixed(1)}s`}`,
    )
    .join("\n");
  return [
    r.status === "up-to-date" ? `app tree up to date: ${r.appDir}` : `app tree built: ${r.appDir}`,
    ...(steps ? [steps] : []),
    `  files         ${r.tree.files}`,
    `  total         ${size(r.tree.bytes)} (${r.tree.bytes} bytes)`,
    `  largest file  ${r.tree.largest.path} (${size(r.tree.largest.bytes)})`,
    `  pnpm          ${r.pnpm}`,
    `  inputs        ${r.inputHash.slice(0, 16)}`,
    `  took          ${(r.durationMs / 1000).toFixed(1)}s`,
  ].join("\n");
}

export function registerBuild(program: Command): void {
  program
    .command("build")
    .description(
      "Install and build the prepared MetaMCP with the pnpm it pins, and assemble the deployable app tree",
    )
    .option("--build-dir <dir>", "the prepared MetaMCP tree; env BUILD_DIR (default build/metamcp)")
    .option("--app-dir <dir>", "where to assemble the app tree; env APP_DIR (default <build-dir>/../app)")
    .option("--force", "rebuild even when nothing changed")
    .option(
      "--runtime-bundle <file>",
      `our runtime bundle to ship, with secrets-preload.mjs beside it (default <tool>/${RUNTIME_BUNDLE_PATH})`,
    )
    .action(
      action(
        async (
          ctx,
          opts: { buildDir?: string; appDir?: string; force?: boolean; runtimeBundle?: string },
        ) => {
          const config = ctx.config({ "build-dir": opts.buildDir, "app-dir": opts.appDir });
          const { buildFromConfig } = await import("../build/build-app.js");
          const result = await buildFromConfig(config, ctx.log, {
            force: opts.force ?? false,
            runtimeBundle: opts.runtimeBundle ? path.resolve(config.cwd, opts.runtimeBundle) : undefined,
          });
          ctx.result(result, () => describe(result));
        },
      ),
    );
}
