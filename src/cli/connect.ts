import { existsSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { CLIENTS, type ClientId } from "../connect/clients.js";
import type { ConnectTarget } from "../connect/target.js";
import { action, type CommandContext } from "./common.js";

interface ConnectOptions {
  local?: boolean;
  stateDir?: string;
  client?: string;
  headers?: boolean;
  write?: boolean;
  saveKey?: boolean;
  apiKey?: string;
  apiKeyFile?: string;
  stdio?: boolean;
  url?: string;
  printToken?: boolean;
  identity?: string;
  auth?: string;
}

/** Project-level files are written by default; Claude Desktop's user-wide file only when named. */
const WRITE_DEFAULT: ClientId[] = ["claude-code", "cursor", "vscode", "inspector"];

export function registerConnect(program: Command): void {
  program
    .command("connect <endpoint>")
    .description(
      "Connect an MCP client to a MetaMCP endpoint through the Apps proxy: print or write its configuration, or run the stdio bridge (--stdio)",
    )
    .option("--local", "the local rehearsal (`make local`) instead of a Databricks target (also: -t local)")
    .option("--state-dir <dir>", "the local rehearsal's state folder (LOCAL_STATE_DIR)")
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
        const [
          { defaultKeyFile, writeKeyFile },
          { parseAuthMode, parseOnOff, setEndpointIdentity },
          { decideIdentity, describeIdentityState },
          { clientConfigs, connectionSpec, parseClients, renderConfigs, saveKeyCommand },
          { databricksCliPath, endpointUrl, resolveAppUrl, targetLabel, tokenSourceFor },
          { writeClientConfig },
        ] = await Promise.all([
          import("../connect/api-key.js"),
          import("../connect/identity.js"),
          import("../connect/identity-plan.js"),
          import("../connect/plan.js"),
          import("../connect/target.js"),
          import("../connect/write-config.js"),
        ]);
        const target = resolveTarget(ctx, opts);
        const keyFile = defaultKeyFile(target.kind === "local" ? "local" : target.appName);
        const bin = path.resolve(process.argv[1] ?? "bin/metamcp-databricks.js");
        if (opts.printToken) {
          // The one place besides `local token` that prints a token, on purpose.
          process.stdout.write(`${await (await tokenSourceFor(target)).token()}\n`);
          return 0;
        }
        const auth = parseAuthMode(opts.auth);
        if (opts.stdio) {
          const { runStdioBridge } = await import("../connect/stdio.js");
          await runStdioBridge({ endpoint, target, keyFile, ...opts, auth, log: ctx.log, bin });
          return 0;
        }
        if (opts.identity !== undefined) {
          const accept = parseOnOff(opts.identity);
          const appUrl = await resolveAppUrl(target);
          const state = await setEndpointIdentity(appUrl, endpoint, await tokenSourceFor(target), accept);
          ctx.result(state, () => describeIdentityState(state, bin, target));
          return 0;
        }
        if (opts.saveKey) {
          writeKeyFile(keyFile, opts.apiKey ?? (await readStdin()));
          ctx.log.success(`MetaMCP API key saved in ${keyFile} (mode 0600)`);
          ctx.print(`next: ${saveKeyCommand(bin, target, endpoint).split(" --save-key")[0]} --write`);
          return 0;
        }
        const appUrl = await resolveAppUrl(target);
        const url = endpointUrl(appUrl, endpoint);
        const identity = await decideIdentity({ auth, appUrl, endpoint, target, log: ctx.log });
        const spec = connectionSpec({
          endpoint,
          target,
          url,
          keyFile,
          node: process.execPath,
          bin,
          databricksCliPath:
            target.kind === "databricks" ? await databricksCliPath(target.databricksCli) : undefined,
          identity: identity.accepts,
        });
        const clients = parseClients(opts.client, opts.write ? WRITE_DEFAULT : CLIENTS);
        const configs = clientConfigs(spec, clients, opts.headers ? ["bridge", "headers"] : ["bridge"]);
        const written = opts.write
          ? configs
              .filter((c) => c.variant === "bridge")
              .flatMap((c) => writeClientConfig(c, spec.serverName, process.cwd()) ?? [])
          : [];
        const hasKey = existsSync(keyFile);
        const result = {
          endpoint,
          target: targetLabel(target),
          url,
          serverName: spec.serverName,
          keyFile,
          hasKey,
          auth: identity.accepts ? "identity" : "key",
          configs,
          written,
        };
        ctx.result(result, () =>
          [
            `# ${spec.serverName}: ${url}`,
            ...(identity.accepts
              ? [`# ${endpoint} accepts the Databricks identity (${identity.why}): no MetaMCP API key needed`]
              : hasKey
                ? []
                : [
                    `# No MetaMCP API key saved yet: create one in MetaMCP ("API Keys") and run`,
                    `#   ${saveKeyCommand(bin, target, endpoint)}`,
                  ]),
            "",
            renderConfigs(configs, spec),
            ...written.map((w) => `${w.action}: ${w.file}`),
          ].join("\n"),
        );
        return 0;
      }),
    );
}

function resolveTarget(ctx: CommandContext, opts: ConnectOptions): ConnectTarget {
  const local = opts.local || ctx.globals.target === "local";
  const config = ctx.config(local ? { target: undefined } : {});
  if (local) return { kind: "local", stateDir: path.resolve(opts.stateDir ?? config.local.stateDir) };
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
