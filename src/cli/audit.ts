import type { Command } from "commander";
import type { AuditRecord } from "../audit/query.js";
import { EXIT, UserError } from "../errors.js";
import { action } from "./common.js";

interface AuditFlags {
  local?: boolean;
  since?: string;
  user?: string;
  tool?: string;
  endpoint?: string;
  limit?: string;
}

export function registerAudit(program: Command): void {
  program
    .command("audit")
    .description("Tool calls on the record: who called what, when, with what outcome (docs/audit.md)")
    .option(
      "--local",
      "read the audit of the running `local up` (else: the deployed app of --target, for its managers)",
    )
    .option("--since <when>", "only calls since then: 90s, 15m, 1h, 7d, or an ISO date")
    .option("--user <email>", "only this person's (or service principal's) calls")
    .option("--tool <name>", "only this tool (`tool` or `server__tool`)")
    .option("--endpoint <name>", "only calls to this MetaMCP endpoint")
    .option("--limit <n>", "at most this many rows, newest first (default 100)")
    .action(
      action(async (ctx, flags: AuditFlags) => {
        if (!flags.local && !ctx.globals.target)
          throw new UserError(
            "audit_where",
            "say where to read: --local (the running `local up`) or --target T (a deployed app, for its managers)",
            EXIT.input,
            "or query <schema>.databricks_tool_calls from a SQL warehouse through the Lakebase catalog (docs/audit.md)",
          );
        const { parseLimit, parseSince, formatAuditRows } = await import("../audit/query.js");
        const filters = {
          since: flags.since ? parseSince(flags.since) : undefined,
          user: flags.user,
          tool: flags.tool,
          endpoint: flags.endpoint,
          limit: parseLimit(flags.limit),
        };
        let rows: AuditRecord[];
        if (flags.local) {
          const { readLocalAudit } = await import("../audit/local.js");
          rows = await readLocalAudit(ctx.config(), filters);
        } else {
          const { withDevNames } = await import("../databricks/dev-user.js");
          const { config } = await withDevNames(ctx.config, ctx.log);
          const { readRemoteAudit } = await import("../audit/remote.js");
          rows = await readRemoteAudit(config, filters);
        }
        ctx.result({ rows }, () => formatAuditRows(rows));
      }),
    );
}
