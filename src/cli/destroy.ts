import type { Command } from "commander";
import { action } from "./common.js";
import { confirm } from "./confirm.js";

export function registerDestroy(program: Command): void {
  program
    .command("destroy")
    .description("Delete the dev target: its app, bundle files and what the bundle created (asks first)")
    .option("-y, --yes", "do not ask for confirmation")
    .action(
      action(async (ctx, opts: { yes?: boolean }) => {
        const { withDevNames } = await import("../databricks/dev-user.js");
        const { config, configFor } = await withDevNames(ctx.config, ctx.log);
        const { destroy } = await import("../databricks/destroy.js");
        const r = await destroy(config, configFor, ctx.log, {
          yes: opts.yes ?? false,
          confirm,
        });
        ctx.result(
          { target: r.target, destroyed: r.destroyed, secretScope: r.secretScope, kept: r.kept },
          [
            `destroyed: ${r.destroyed}`,
            ...(r.kept ? [r.kept] : []),
            ...(r.scopeKept ? [r.scopeKept] : []),
          ].join("\n"),
        );
      }),
    );
}
