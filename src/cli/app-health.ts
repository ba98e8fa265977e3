import type { Command } from "commander";
import { EXIT } from "../errors.js";
import { action, positiveSeconds } from "./common.js";

export function registerAppHealth(program: Command): void {
  program
    .command("app-health")
    .description(
      "GET <app url>/metamcp/health through the Apps proxy with an OAuth token, until healthy or timeout",
    )
    .option("--timeout <seconds>", "give up after this long", "120")
    .option("--interval <seconds>", "between attempts", "2")
    .action(
      action(async (ctx, opts: { timeout?: string; interval?: string }) => {
        const timeoutMs = positiveSeconds(opts.timeout, "--timeout", 120) * 1000;
        const intervalMs = positiveSeconds(opts.interval, "--interval", 2) * 1000;
        const { withDevNames } = await import("../databricks/dev-user.js");
        const { config } = await withDevNames(ctx.config, ctx.log);
        const { appHealth } = await import("../databricks/app-health.js");
        const result = await appHealth(config, {
          timeoutMs,
          intervalMs,
          onAttempt: (a) =>
            a.problem && ctx.log.info(`not healthy yet: ${a.problem} (${a.latencyMs.toFixed(0)} ms)`),
        });
        ctx.result(result, () =>
          result.healthy
            ? `healthy: ${result.url} → ${result.status} in ${result.latencyMs?.toFixed(0)} ms (attempt ${result.attempts}, ${(result.elapsedMs / 1000).toFixed(1)}s)`
            : `NOT healthy after ${(result.elapsedMs / 1000).toFixed(0)}s and ${result.attempts} attempts: ${result.url} → ${result.problem}\n  → look at \`make app-logs TARGET=${config.target}\` and \`make app-status TARGET=${config.target}\``,
        );
        return result.healthy ? 0 : EXIT.databricks;
      }),
    );
}
