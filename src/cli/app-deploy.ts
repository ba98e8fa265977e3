import type { Command } from "commander";
import { action, positiveSeconds } from "./common.js";

export function registerAppDeploy(program: Command): void {
  program
    .command("app-deploy")
    .description(
      "Ship the current app tree to the App (`databricks bundle sync`, then `bundle run`: starts the app if stopped, SNAPSHOT deployment) and wait for the outcome",
    )
    .option("--no-wait", "return once the deployment has started")
    .option("--force", "deploy even when the app already runs this app tree")
    .option("--timeout <seconds>", "how long to wait for compute and the deployment", "1200")
    .option(
      "--poll <seconds>",
      "how often to look at the app while the CLI deploys (for --no-wait, a cancelled deployment, one left in flight)",
      "3",
    )
    .action(
      action(async (ctx, opts: { wait?: boolean; timeout?: string; poll?: string; force?: boolean }) => {
        const timeoutMs = positiveSeconds(opts.timeout, "--timeout", 1200) * 1000;
        const pollMs = positiveSeconds(opts.poll, "--poll", 3) * 1000;
        const { withDevNames } = await import("../databricks/dev-user.js");
        const { config, configFor } = await withDevNames(ctx.config, ctx.log);
        const { appDeploy } = await import("../databricks/app-deploy.js");
        const r = await appDeploy(config, configFor, ctx.log, {
          wait: opts.wait ?? true,
          force: opts.force ?? false,
          timeoutMs,
          pollMs,
        });
        ctx.result(r, () =>
          [
            r.by === "unchanged"
              ? `already running the current app tree: deployment ${r.deploymentId} ${r.state} (--force deploys again)`
              : `deployment ${r.deploymentId}: ${r.state}${r.message ? ` (${r.message})` : ""}`,
            `  app     ${r.appName}${r.computeStarted ? " (compute started)" : ""}`,
            `  source  ${r.sourceCodePath}`,
            ...(r.url ? [`  url     ${r.url}`] : []),
            r.state === "SUCCEEDED"
              ? `next: make app-health TARGET=${r.target}`
              : `follow it: make app-status TARGET=${r.target}`,
          ].join("\n"),
        );
      }),
    );
}
