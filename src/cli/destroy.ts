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
        const lb = config.lakebase;
        const ownsProject = lb.create && lb.kind === "autoscaling";
        const what = `app ${config.appName}, its bundle files, the secret scope ${config.secret.scope} if bundle-deploy created it${
          ownsProject ? ` and the Lakebase project ${lb.project} with its data (purged, not recoverable)` : ""
        }`;
        const kept = ownsProject
          ? undefined
          : `kept: Lakebase ${lb.kind === "autoscaling" ? `project ${lb.project}` : `instance ${lb.instanceName}`} (attached, not created by the bundle)`;
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
        const r = await destroyDev(config, rendered, ctx.log);
        const scopeLine =
          r.scope === "kept-not-ours"
            ? `kept: secret scope ${config.secret.scope} (bundle-deploy did not create it)`
            : undefined;
        ctx.result(
          { target: config.target, destroyed: what, secretScope: r.scope, kept },
          [`destroyed: ${what}`, ...(kept ? [kept] : []), ...(scopeLine ? [scopeLine] : [])].join("\n"),
        );
      }),
    );
}
