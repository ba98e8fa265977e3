import type { Command } from "commander";
import { type Config, ConfigError } from "../config/load.js";
import { DatabricksCli } from "../databricks/cli.js";
import { cliFor } from "../databricks/deploy.js";
import { formatChecks, type InvalidConfig, runDoctor } from "../databricks/doctor.js";
import { action, type CommandContext } from "./common.js";

/** The config, or what doctor can still use of an invalid one (its problems become the names check). */
function loadForDoctor(ctx: CommandContext, flags?: Record<string, string>): Config | InvalidConfig {
  try {
    return ctx.config(flags);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return {
      invalid: true,
      problems: err.problems,
      hint: err.hint,
      profile: err.validValues.DATABRICKS_CONFIG_PROFILE?.value,
      databricksCli: err.validValues.DATABRICKS_CLI?.value,
    };
  }
}

export function registerDoctor(program: Command): void {
  program
    .command("doctor")
    .description("Check git, Node, the Databricks CLI, the profile's login, the workspace and the names")
    .action(
      action(async (ctx) => {
        const config = loadForDoctor(ctx);
        let report: Awaited<ReturnType<typeof runDoctor>>;
        if ("invalid" in config) {
          const cli =
            config.databricksCli === undefined
              ? undefined
              : new DatabricksCli(config.databricksCli, config.profile ?? "DEFAULT", ctx.log);
          report = await runDoctor(config, cli);
        } else {
          const other = loadForDoctor(ctx, { target: config.target === "dev" ? "prod" : "dev" });
          report = await runDoctor(config, cliFor(config, ctx.log), "invalid" in other ? undefined : other);
        }
        ctx.result({ ok: report.ok, checks: report.checks }, () => formatChecks(report.checks));
        return report.ok ? 0 : 4;
      }),
    );
}
