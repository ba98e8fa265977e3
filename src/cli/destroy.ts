import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { destroyDev } from "../databricks/deploy.js";
import { renderBundle } from "../databricks/render.js";
import { UserError } from "../errors.js";
import { action } from "./common.js";
import { confirm } from "./confirm.js";

export function registerDestroy(program: Command): void {
  program
    .command("destroy")
    .description("Delete the dev target: its app, bundle files and what the bundle created (asks first)")
    .option("-y, --yes", "do not ask for confirmation")
    .action(
      action(async (ctx, opts: { yes?: boolean }) => {
        const config = ctx.config();
        if (config.target !== "dev") {
          throw new UserError(
            "destroy_prod_refused",
            `destroy only removes the dev target, not ${config.target}: prod data lives there`,
            2,
            `if you really mean it, run \`databricks bundle destroy --target ${config.target}\` yourself from ${path.dirname(config.appDir)}`,
          );
        }
        const rendered = renderBundle(config, (target) => ctx.config({ target }));
        const what = `app ${config.appName}, its bundle files, the secret scope ${config.secret.scope}${
          config.lakebase.create
            ? ` and the Lakebase ${config.lakebase.kind === "autoscaling" ? `project ${config.lakebase.project}` : `instance ${config.lakebase.instanceName}`} with its data`
            : ""
        }`;
        if (!opts.yes && !(await confirm(`Delete ${what} (profile ${config.profile})?`))) {
          throw new UserError(
            "not_confirmed",
            `destroy not confirmed: nothing deleted`,
            2,
            "add --yes to skip the question",
          );
        }
        // bundle destroy needs the bundle definition; the state lives in the workspace.
        mkdirSync(rendered.bundleDir, { recursive: true });
        writeFileSync(path.join(rendered.bundleDir, "databricks.yml"), rendered.databricksYml);
        await destroyDev(config, rendered, ctx.log);
        ctx.result({ target: config.target, destroyed: what }, `destroyed: ${what}`);
      }),
    );
}
