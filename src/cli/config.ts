import type { Command } from "commander";
import { renderEnvTemplate } from "../config/env-template.js";
import { action } from "./common.js";

export function registerConfig(program: Command): void {
  program
    .command("config")
    .description("Print the resolved configuration (every name, per target) and where each value came from")
    .option("--template", "print .env.template (generated from the variable table) instead")
    .action(
      action((ctx, opts: { template?: boolean }) => {
        if (opts.template) {
          ctx.print(renderEnvTemplate());
          return;
        }
        const cfg = ctx.config();
        const rows = Object.entries(cfg.values).map(([name, v]) => ({
          name,
          value: v.secret ? "****" : v.value,
          source: v.source,
        }));
        const width = Math.max(...rows.map((r) => r.name.length));
        ctx.result(
          {
            target: cfg.target,
            values: Object.fromEntries(rows.map((r) => [r.name, { value: r.value, source: r.source }])),
          },
          () => rows.map((r) => `${r.name.padEnd(width)}  ${r.value || '""'}  (${r.source})`).join("\n"),
        );
      }),
    );
}
