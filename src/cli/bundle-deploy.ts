import type { Command } from "commander";
import { bundleDeploy } from "../databricks/deploy.js";
import { action } from "./common.js";

export function registerBundleDeploy(program: Command): void {
  program
    .command("bundle-deploy")
    .description(
      "Render the bundle, preflight (doctor, bundle validate), `databricks bundle deploy`, and create the auth secret once",
    )
    .action(
      action(async (ctx) => {
        const config = ctx.config();
        const r = await bundleDeploy(config, (target) => ctx.config({ target }), ctx.log);
        ctx.result(r, () =>
          [
            `bundle deployed: target ${r.target}, app ${r.appName} (${(r.durationMs / 1000).toFixed(1)}s)`,
            `  BETTER_AUTH_SECRET: ${r.secret === "created" ? "generated (not shown)" : "already present, kept"}`,
            // The bundle may have started the app before the secret existed: only a deployment made
            // now gives it the secret.
            r.secret === "created"
              ? `next: make app-deploy TARGET=${r.target} (required: the app gets the new secret only from a deployment made after it)`
              : `next: make app-deploy TARGET=${r.target}`,
          ].join("\n"),
        );
      }),
    );
}
