import type { Command } from "commander";
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
    .option("--local", "read the audit of the running `local up`")
    .option("--since <when>", "only calls since then: 90s, 15m, 1h, 7d, or an ISO date")
    .option("--user <email>", "only this person's (or service principal's) calls")
    .option("--tool <name>", "only this tool (`tool` or `server__tool`)")
    .option("--endpoint <name>", "only calls to this MetaMCP endpoint")
    .option("--limit <n>", "at most this many rows, newest first (default 100)")
    .action(
      action(async (ctx, flags: AuditFlags) => {
        if (!flags.local)
          throw new UserError(
            "audit_where",
            ctx.globals.target
              ? `reading a deployed app's audit with --target is not available yet (target ${ctx.globals.target})`
              : "say where to read: --local (the running `local up`)",
            EXIT.input,
            "on Databricks, query <schema>.databricks_tool_calls from a SQL warehouse through the Lakebase catalog (docs/audit.md)",
          );
        const { parseLimit, parseSince, formatAuditRows } = await import("../audit/query.js");
        const filters = {
          since: flags.since ? parseSince(flags.since) : undefined,
          user: flags.user,
          tool: flags.tool,
          endpoint: flags.endpoint,
          limit: parseLimit(flags.limit),
        };
        const { readLocalAudit } = await import("../audit/local.js");
        const rows = await readLocalAudit(ctx.config(), filters);
        ctx.result({ rows }, () => formatAuditRows(rows));
      }),
    );
}
