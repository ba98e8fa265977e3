import type { Command } from "commander";
import { action } from "./common.js";

export function registerBundleDeploy(program: Command): void {
  program
    .command("bundle-deploy")
    .description(
      "Create the auth secret once, render the bundle, preflight (doctor, bundle validate), `databricks bundle deploy` (which starts the app and deploys its code when it creates or changes it)",
    )
    .action(
      action(async (ctx) => {
        const { withDevNames } = await import("../databricks/dev-user.js");
        const { config, configFor } = await withDevNames(ctx.config, ctx.log);
        const { bundleDeploy } = await import("../databricks/bundle-deploy.js");
        const r = await bundleDeploy(config, configFor, ctx.log);
        ctx.result(r, () =>
          [
            `bundle deployed: target ${r.target}, app ${r.appName} (${(r.durationMs / 1000).toFixed(1)}s)${r.firstDeploy ? " — first deploy" : ""}`,
            `  BETTER_AUTH_SECRET: ${r.secret === "created" ? "generated (not shown)" : "already present, kept"} in ${r.secretScope}`,
            ...(r.appUrl ? [`  url: ${r.appUrl}`] : []),
            r.codeDeployment
              ? `  code: deployed by bundle deploy (deployment ${r.codeDeployment.id} ${r.codeDeployment.state ?? ""})`
              : "  code: not deployed (bundle deploy deploys code only when it creates, starts or changes the app)",
            r.codeDeployment?.state === "SUCCEEDED"
              ? `next: make app-health TARGET=${r.target}`
              : `next: make app-deploy TARGET=${r.target} (ships the app tree)`,
          ].join("\n"),
        );
      }),
    );
}
