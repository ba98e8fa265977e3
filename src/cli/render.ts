import path from "node:path";
import type { Command } from "commander";
import { action } from "./common.js";

export function registerRender(program: Command): void {
  program
    .command("render")
    .description("Write databricks.yml and app.yaml for a target, from the one config, without deploying")
    .option(
      "--out <dir>",
      "write both files into this folder (for review or CI diffs) instead of where bundle-deploy uses them",
    )
    .action(
      action(async (ctx, opts: { out?: string }) => {
        const { withDevNames } = await import("../databricks/dev-user.js");
        const { config, configFor } = await withDevNames(ctx.config, ctx.log);
        const { renderToFiles } = await import("../databricks/render.js");
        const out = opts.out ? path.resolve(config.cwd, opts.out) : undefined;
        const r = renderToFiles(config, configFor, ctx.log, out);
        ctx.result(r, () =>
          [
            `rendered for target ${r.target}:`,
            `  ${r.databricksYml}`,
            `  ${r.appYaml}`,
            `next: make bundle-deploy TARGET=${r.target}`,
          ].join("\n"),
        );
      }),
    );
}
