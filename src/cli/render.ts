import path from "node:path";
import type { Command } from "commander";
import { renderBundle, writeBundle } from "../databricks/render.js";
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
      action((ctx, opts: { out?: string }) => {
        const config = ctx.config();
        const rendered = renderBundle(config, (target) => ctx.config({ target }));
        for (const w of rendered.warnings) ctx.log.warn(w);
        const written = writeBundle(rendered, opts.out ? path.resolve(config.cwd, opts.out) : undefined);
        ctx.result(
          { target: config.target, ...written, bundleDir: rendered.bundleDir, variables: rendered.variables },
          () =>
            [
              `rendered for target ${config.target}:`,
              `  ${written.databricksYml}`,
              `  ${written.appYaml}`,
              `next: make bundle-deploy TARGET=${config.target}`,
            ].join("\n"),
        );
      }),
    );
}
