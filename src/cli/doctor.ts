import type { Command } from "commander";
import { cliFor } from "../databricks/deploy.js";
import { formatChecks, runDoctor } from "../databricks/doctor.js";
import { action } from "./common.js";

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("Check git, Node, the Databricks CLI, the profile's login, the workspace and the names")
    .action(
      action(async (ctx) => {
        const config = ctx.config();
        const other = ctx.config({ target: config.target === "dev" ? "prod" : "dev" });
        const report = await runDoctor(config, cliFor(config, ctx.log), other);
        ctx.result({ ok: report.ok, checks: report.checks }, () => formatChecks(report.checks));
        return report.ok ? 0 : 4;
      }),
    );
}
