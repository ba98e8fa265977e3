import type { Command } from "commander";
import { EXIT } from "../errors.js";
import { action } from "./common.js";

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("Check git, Node, the Databricks CLI, the profile's login, the workspace and the names")
    .action(
      action(async (ctx) => {
        const { doctor, formatChecks } = await import("../databricks/doctor.js");
        const report = await doctor(ctx.config, ctx.log);
        ctx.result({ ok: report.ok, checks: report.checks }, () => formatChecks(report.checks));
        return report.ok ? 0 : EXIT.databricks;
      }),
    );
}
