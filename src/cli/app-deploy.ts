import type { Command } from "commander";
import { appDeploy } from "../databricks/deploy.js";
import { renderBundle } from "../databricks/render.js";
import { UserError } from "../errors.js";
import { action } from "./common.js";

export function positiveSeconds(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0)
    throw new UserError("invalid_option", `${name} must be a positive number of seconds`);
  return n;
}

export function registerAppDeploy(program: Command): void {
  program
    .command("app-deploy")
    .description("Deploy the bundle's synced app tree to the App (SNAPSHOT) and wait for the outcome")
    .option("--no-wait", "return once the deployment has started")
    .option("--timeout <seconds>", "how long to wait for compute and the deployment", "1200")
    .option("--poll <seconds>", "how often to ask for the compute and deployment state", "3")
    .action(
      action(async (ctx, opts: { wait?: boolean; timeout?: string; poll?: string }) => {
        const config = ctx.config();
        const rendered = renderBundle(config, (target) => ctx.config({ target }));
        const r = await appDeploy(config, rendered, ctx.log, {
          wait: opts.wait ?? true,
          timeoutMs: positiveSeconds(opts.timeout, "--timeout", 1200) * 1000,
          pollMs: positiveSeconds(opts.poll, "--poll", 3) * 1000,
        });
        ctx.result(r, () =>
          [
            `deployment ${r.deploymentId}: ${r.state}${r.message ? ` (${r.message})` : ""}`,
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
