import type { Command } from "commander";
import { action } from "./common.js";

export function registerConfig(program: Command): void {
  program
    .command("config")
    .description("Print the resolved configuration (every name, per target) and where each value came from")
    .option("--template", "print .env.template (generated from the variable table) instead")
    .action(
      action(async (ctx, opts: { template?: boolean }) => {
        if (opts.template) {
          const { renderEnvTemplate } = await import("../config/env-template.js");
          ctx.print(renderEnvTemplate());
          return;
        }
        const { showConfig } = await import("../config/show.js");
        const { target, rows } = showConfig(ctx.config());
        const width = Math.max(...rows.map((r) => r.name.length));
        ctx.result(
          {
            target,
            values: Object.fromEntries(rows.map((r) => [r.name, { value: r.value, source: r.source }])),
          },
          () => rows.map((r) => `${r.name.padEnd(width)}  ${r.value || '""'}  (${r.source})`).join("\n"),
        );
      }),
    );
}
