import { existsSync, statSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { renderBundle, writeBundle } from "../databricks/render.js";
import { UserError } from "../errors.js";
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
        const out = opts.out ? path.resolve(config.cwd, opts.out) : undefined;
        if (out && existsSync(out) && !statSync(out).isDirectory())
          throw new UserError(
            "out_not_a_folder",
            `--out ${out} is a file: --out names a FOLDER that receives databricks.yml and app.yaml`,
            2,
            "give a folder (new or existing), e.g. --out rendered/",
          );
        let written: ReturnType<typeof writeBundle>;
        try {
          written = writeBundle(rendered, out);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (!code || err instanceof UserError) throw err;
          throw new UserError(
            "render_write_failed",
            `cannot write the rendered files${out ? ` into ${out}` : ""} (${code}: ${(err as Error).message})`,
            2,
            "choose a folder you can write (--out DIR), or fix its permissions",
          );
        }
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
