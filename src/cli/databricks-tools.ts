import path from "node:path";
import type { Command } from "commander";
import type { ConnectTarget } from "../connect/target.js";
import { EXIT, UserError } from "../errors.js";
import { localUserEmail } from "../local/user-token.js";
import { action, type CommandContext } from "./common.js";

interface ToolsOptions {
  local?: boolean;
  stateDir?: string;
  user?: string;
  name?: string;
  public?: boolean;
  perPerson?: boolean;
}

const KINDS_HELP = `kinds (and the path on the workspace host):
  genie <space-id>                      a Genie space            /api/2.0/mcp/genie/<space-id>
  genie-one                             Genie across spaces      /api/2.0/mcp/genie
  sql                                   Databricks SQL           /api/2.0/mcp/sql
  functions <catalog>.<schema>[.<fn>]   Unity Catalog functions  /api/2.0/mcp/functions/<catalog>/<schema>[/<fn>]
  search <catalog>.<schema>[.<index>]   Vector Search            /api/2.0/mcp/vector-search/<catalog>/<schema>[/<index>]
  connection <name>                     a UC connection's server /api/2.0/mcp/external/<name>
Without --local, the target (-t dev|prod) and profile (-p) say which workspace and app. The server is an
ordinary Streamable HTTP server in MetaMCP that the app calls as its service principal, or with
--per-person as each person who calls it (docs/databricks-tools-cli.md).`;

export function registerDatabricksTools(program: Command): void {
  const tools = program
    .command("databricks-tools")
    .description(
      "Add Databricks' managed MCP servers (Genie, SQL, UC functions, search, connections) to MetaMCP",
    );
  const withTarget = (c: Command) =>
    c
      .option("--local", "the local rehearsal (`make local`) instead of a Databricks target (also: -t local)")
      .option("--state-dir <dir>", "the local rehearsal's state folder (LOCAL_STATE_DIR)")
      .option("--user <email>", "with --local: act as this local user (default: the local default user)");

  withTarget(
    tools
      .command("add <kind> [ids]")
      .description(
        "Create the server in MetaMCP as you, and print the grants the app's service principal needs",
      )
      .option(
        "--name <name>",
        "the server's name in MetaMCP (default databricks-<kind>-<ids>, with -per-person for --per-person)",
      )
      .option("--public", "every MetaMCP user sees it (default: only you)")
      .option(
        "--per-person",
        "each person's own workspace token calls it (on-behalf-of: the app needs user_api_scopes, APP_USER_API_SCOPES), not the app's service principal",
      )
      .addHelpText("after", `\n${KINDS_HELP}`),
  ).action(
    action(async (ctx, kind: string, ids: string | undefined, opts: ToolsOptions) => {
      const { addToolServer, toolsWorkspace } = await import("../databricks-tools/tools.js");
      const r = await addToolServer(
        { kind, ids, name: opts.name, public: opts.public, perPerson: opts.perPerson },
        () => workspaceOf(ctx, opts, toolsWorkspace),
      );
      ctx.result(r, () =>
        [
          `created ${r.public ? "public" : "private"} MetaMCP server ${r.name} (${r.uuid}): ${r.url}`,
          r.identity === "user"
            ? "it runs as each person who calls it, with their own token (the app needs user_api_scopes: APP_USER_API_SCOPES); each person needs, if not granted yet:"
            : `it runs as the app's service principal ${r.principal}; an admin grants it, if not done yet:`,
          ...r.grants.map((g) => `  ${g}`),
          "next: add it to a namespace in MetaMCP (Namespaces → your namespace → MCP servers)",
        ].join("\n"),
      );
      return 0;
    }),
  );

  withTarget(
    tools
      .command("list")
      .description("The managed-server entries MetaMCP shows you (yours and the public ones)"),
  ).action(
    action(async (ctx, opts: ToolsOptions) => {
      const { listToolServers, toolsWorkspace } = await import("../databricks-tools/tools.js");
      const rows = await listToolServers(await workspaceOf(ctx, opts, toolsWorkspace));
      ctx.result(rows, () =>
        rows.length === 0
          ? "no Databricks managed MCP servers in MetaMCP for you yet (`databricks-tools add …`)"
          : rows
              .map(
                (r) =>
                  `${r.name}\t${r.kind}${r.ids.length ? ` ${r.ids.join(".")}` : ""}\tas ${r.identity === "user" ? "each person" : "the app"}\t${r.public ? "public" : "private"}\t${r.uuid}`,
              )
              .join("\n"),
      );
      return 0;
    }),
  );

  withTarget(
    tools
      .command("grants <kind> [ids]")
      .description("Print the Unity Catalog GRANT statements for the app's service principal")
      .addHelpText("after", `\n${KINDS_HELP}`),
  ).action(
    action(async (ctx, kind: string, ids: string | undefined, opts: ToolsOptions) => {
      const { toolGrants, toolsWorkspace } = await import("../databricks-tools/tools.js");
      const r = await toolGrants(kind, ids, () => workspaceOf(ctx, opts, toolsWorkspace));
      ctx.result(r, () => r.grants.join("\n"));
      return 0;
    }),
  );
}

async function workspaceOf(
  ctx: CommandContext,
  opts: ToolsOptions,
  toolsWorkspace: typeof import("../databricks-tools/tools.js").toolsWorkspace,
) {
  const local = opts.local || ctx.globals.target === "local";
  if (local) {
    const config = ctx.config({ target: undefined });
    const target: ConnectTarget = {
      kind: "local",
      stateDir: path.resolve(opts.stateDir ?? config.local.stateDir),
      ...(opts.user !== undefined ? { user: localUserEmail(opts.user) } : {}),
    };
    return toolsWorkspace(target, config.appName);
  }
  if (opts.user !== undefined)
    throw new UserError(
      "invalid_option",
      "--user is for the local rehearsal (--local): on Databricks you act as your profile's user",
      EXIT.input,
      "add --local, or use --profile for another Databricks user",
    );
  const { withDevNames } = await import("../databricks/dev-user.js");
  const config = await withDevNames(ctx.config, ctx.log).then(
    (r) => r.config,
    () => ctx.config(),
  );
  return toolsWorkspace(
    {
      kind: "databricks",
      target: config.target,
      profile: config.profile,
      databricksCli: config.databricksCli,
      appName: config.appName,
    },
    config.appName,
  );
}
