import path from "node:path";
import type { Command } from "commander";
import { CLIENTS } from "../connect/clients.js";
import type { ConnectRequest } from "../connect/connect.js";
import type { ConnectTarget } from "../connect/target.js";
import { EXIT, UserError } from "../errors.js";
import { localUserEmail } from "../local/user-token.js";
import { action, type CommandContext } from "./common.js";

/** connect's own flags (what the domain call takes) plus where the target comes from. */
interface ConnectOptions extends ConnectRequest {
  local?: boolean;
  stateDir?: string;
  user?: string;
}

export function registerConnect(program: Command): void {
  program
    .command("connect <endpoint>")
    .description(
      "Connect an MCP client to a MetaMCP endpoint through the Apps proxy: print or write its configuration, or run the stdio bridge (--stdio)",
    )
    .option("--local", "the local rehearsal (`make local`) instead of a Databricks target (also: -t local)")
    .option("--state-dir <dir>", "the local rehearsal's state folder (LOCAL_STATE_DIR)")
    .option(
      "--user <email>",
      "with --local: act as this local user (one who signed in at the local login page); default: the local default user",
    )
    .option("--client <list>", `${CLIENTS.join(",")} or all`, "all")
    .option("--headers", "also show the short-lived variant that sends the headers itself (no bridge)")
    .option(
      "--write",
      "write the configuration files (project files; Claude Desktop's only with --client claude-desktop)",
    )
    .option("--save-key", "read the MetaMCP API key from stdin and keep it in a 0600 file for the bridge")
    .option("--api-key <key>", "the MetaMCP API key (visible to other local users in `ps`: prefer the file)")
    .option("--api-key-file <file>", "a file holding the MetaMCP API key")
    .option("--stdio", "run the bridge: MCP on stdin/stdout, forwarded to the endpoint with fresh tokens")
    .option("--url <url>", "with --stdio: the endpoint URL (skips looking the app up)")
    .option("--print-token", "print a fresh bearer token for the Apps proxy (for the short-lived variant)")
    .option(
      "--identity <on|off>",
      "as the endpoint's owner: let it accept the Databricks identity instead of a MetaMCP API key (on), or not (off)",
    )
    .option(
      "--auth <key|identity>",
      "how clients authenticate to MetaMCP: identity = the Databricks token alone, key = also a MetaMCP API key (default: ask the app)",
    )
    .action(
      action(async (ctx, endpoint: string, opts: ConnectOptions) => {
        // The connect modules (the MCP SDK for the bridge, the Databricks SDK) load when connect runs.
        const [{ connect }, { describeIdentityState }, { renderConfigs }] = await Promise.all([
          import("../connect/connect.js"),
          import("../connect/identity-plan.js"),
          import("../connect/plan.js"),
        ]);
        const target = await resolveTarget(ctx, opts);
        const bin = path.resolve(process.argv[1] ?? "bin/metamcp-databricks.js");
        const out = await connect(endpoint, target, opts, {
          log: ctx.log,
          bin,
          cwd: process.cwd(),
          readKey: readStdin,
        });
        switch (out.mode) {
          case "token":
            process.stdout.write(`${out.token}\n`);
            break;
          case "bridge":
            break;
          case "identity":
            ctx.result(out.state, () => describeIdentityState(out.state, bin, target));
            break;
          case "key-saved":
            ctx.log.success(`MetaMCP API key saved in ${out.keyFile} (mode 0600)`);
            ctx.print(`next: ${out.next} --write`);
            break;
          case "configs": {
            const r = out.result;
            ctx.result(r, () =>
              [
                `# ${r.serverName}: ${r.url}`,
                ...(r.auth === "identity"
                  ? [
                      `# ${endpoint} accepts the Databricks identity (${out.identityWhy}): no MetaMCP API key needed`,
                    ]
                  : r.hasKey
                    ? []
                    : [
                        `# No MetaMCP API key saved yet: create one in MetaMCP ("API Keys") and run`,
                        `#   ${out.saveKey}`,
                      ]),
                "",
                renderConfigs(r.configs, out.spec),
                ...r.written.map((w) => `${w.action}: ${w.file}`),
              ].join("\n"),
            );
            break;
          }
        }
        return 0;
      }),
    );
}

async function resolveTarget(ctx: CommandContext, opts: ConnectOptions): Promise<ConnectTarget> {
  const local = opts.local || ctx.globals.target === "local";
  if (local) {
    const config = ctx.config({ target: undefined });
    return {
      kind: "local",
      stateDir: path.resolve(opts.stateDir ?? config.local.stateDir),
      ...(opts.user !== undefined ? { user: localUserEmail(opts.user) } : {}),
    };
  }
  if (opts.user !== undefined)
    throw new UserError(
      "invalid_option",
      "--user is for the local rehearsal (--local): on Databricks the token is your profile's user",
      EXIT.input,
      "add --local, or use --profile for another Databricks user",
    );
  // dev's app carries the deploying user's name, as bundle-deploy named it.
  const { withDevNames } = await import("../databricks/dev-user.js");
  // A failed lookup (a PAT profile, no login) is left to connect's own auth checks, which say what to do.
  const config = await withDevNames(ctx.config, ctx.log).then(
    (r) => r.config,
    (err: unknown) => {
      ctx.log.debug(`dev names: ${err instanceof Error ? err.message : String(err)}`);
      return ctx.config();
    },
  );
  return {
    kind: "databricks",
    target: config.target,
    profile: config.profile,
    databricksCli: config.databricksCli,
    appName: config.appName,
  };
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write("paste the MetaMCP API key, then Enter and Ctrl-D: ");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
