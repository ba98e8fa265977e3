import path from "node:path";
import type { Command } from "commander";
import { action } from "./common.js";

export function registerStart(program: Command): void {
  program
    .command("start")
    .description(
      "Run MetaMCP as the Databricks App does (the app tree's `node runtime/start.mjs`): Lakebase credential " +
        "with renewal, schema, migrations, one port. Reads the platform's environment.",
    )
    .option("--app-dir <dir>", "the built app tree; env APP_DIR (default build/app)")
    .action(
      action(async (ctx, opts: { appDir?: string }) => {
        const config = ctx.config({ "app-dir": opts.appDir });
        // Loaded here, not at the top: help and every other command would otherwise load pg and the proxy.
        const { runApp } = await import("../runtime/main.js");
        return await runApp(path.join(config.appDir, "runtime"));
      }),
    );
}
