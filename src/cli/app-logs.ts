import type { Command } from "commander";
import type { AppLogEntry } from "../databricks/app-logs.js";
import { EXIT, UserError } from "../errors.js";
import { maskDeep, maskSecrets } from "../log/secrets.js";
import { action } from "./common.js";

function formatEntry(e: AppLogEntry): string {
  const time = new Date(e.timestamp * 1000).toISOString();
  return `${time} [${e.source}] ${e.message.trimEnd()}`;
}

export function registerAppLogs(program: Command): void {
  program
    .command("app-logs")
    .description("The app's logs from its log stream (`databricks apps logs`)")
    .option("-f, --follow", "keep streaming (the CLI reopens a dropped stream) until Ctrl-C")
    .option("--search <text>", "only lines containing this text (filtered by the platform)")
    .option("--tail <n>", "the last N lines first (default: the CLI's, 200)")
    .action(
      action(async (ctx, opts: { follow?: boolean; search?: string; tail?: string }) => {
        const tail = opts.tail === undefined ? undefined : Number(opts.tail);
        if (tail !== undefined && (!Number.isInteger(tail) || tail <= 0))
          throw new UserError("invalid_option", "--tail must be a positive whole number", EXIT.input);
        const { withDevNames } = await import("../databricks/dev-user.js");
        const { config } = await withDevNames(ctx.config, ctx.log);
        const { appLogs } = await import("../databricks/app-logs.js");
        const ac = new AbortController();
        const stop = () => ac.abort();
        // `on`, not `once`: execa's exit hook re-raises a signal nobody else listens to, which would end
        // this process by SIGINT instead of letting the CLI child stop and app-logs end cleanly.
        process.on("SIGINT", stop);
        process.on("SIGTERM", stop);
        const json = ctx.globals.json ?? false;
        try {
          const r = await appLogs(config, ctx.log, {
            follow: opts.follow ?? false,
            search: opts.search,
            tail,
            signal: ac.signal,
            onEntry: (e) =>
              process.stdout.write(`${json ? JSON.stringify(maskDeep(e)) : maskSecrets(formatEntry(e))}\n`),
          });
          ctx.log.debug(`${r.entries} lines, ${r.repeats} sent again after a reconnect (not shown twice)`);
        } finally {
          process.off("SIGINT", stop);
          process.off("SIGTERM", stop);
        }
      }),
    );
}
