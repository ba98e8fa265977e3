import { existsSync } from "node:fs";
import path from "node:path";
import type { Command } from "commander";
import { execa } from "execa";
import { defaultKeyFile, missingKeyError, resolveApiKey, writeKeyFile } from "../connect/api-key.js";
import { startBridge } from "../connect/bridge.js";
import { CLIENTS, type ClientId } from "../connect/clients.js";
import { clientConfigs, connectionSpec, parseClients, renderConfigs } from "../connect/plan.js";
import {
  type ConnectTarget,
  endpointUrl,
  resolveAppUrl,
  targetLabel,
  tokenSourceFor,
} from "../connect/target.js";
import { writeClientConfig } from "../connect/write-config.js";
import { UserError } from "../errors.js";
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
    .action(
      action(async (ctx, endpoint: string, opts: ConnectOptions) => {
        const target = resolveTarget(ctx, opts);
        const keyFile = defaultKeyFile(keyName(target));
        if (opts.printToken) {
          const token = await (await tokenSourceFor(target)).token();
          // The one place a token is printed on purpose, like `local token`.
          process.stdout.write(`${token}\n`);
          return 0;
        }
        if (opts.stdio) return runStdio(ctx, endpoint, target, opts, keyFile);
        if (opts.saveKey) {
          const input = opts.apiKey ?? (await readStdin());
          writeKeyFile(keyFile, input);
          ctx.log.success(`MetaMCP API key saved in ${keyFile} (mode 0600)`);
        }
        const url = endpointUrl(await resolveAppUrl(target), endpoint);
        const bin = path.resolve(process.argv[1] ?? "bin/metamcp-databricks.js");
        const spec = connectionSpec({
          endpoint,
          target,
          url,
          keyFile,
          node: process.execPath,
          bin,
          databricksCliPath: target.kind === "databricks" ? await whichCli(target.databricksCli) : undefined,
        });
        const clients = parseClients(opts.client, opts.write ? WRITE_DEFAULT : CLIENTS);
        const variants: ("bridge" | "headers")[] = opts.headers ? ["bridge", "headers"] : ["bridge"];
        const configs = clientConfigs(spec, clients, variants);
        const written = opts.write
          ? configs
              .filter((c) => c.variant === "bridge")
              .map((c) => writeClientConfig(c, spec.serverName, process.cwd()))
              .filter((w) => w !== undefined)
          : [];
        const hasKey = existsSync(keyFile);
        ctx.result(
          {
            endpoint,
            target: targetLabel(target),
            url,
            serverName: spec.serverName,
            keyFile,
            hasKey,
            configs,
            written,
          },
          () => {
            const lines = [`# ${spec.serverName}: ${url}`];
            if (!hasKey) {
              lines.push(
                `# No MetaMCP API key saved yet: create one in MetaMCP ("API Keys") and run`,
                `#   ${keyCommand(target, endpoint)}`,
              );
            }
            lines.push("", renderConfigs(configs, spec));
            for (const w of written) lines.push(`${w.action}: ${w.file}`);
            return lines.join("\n");
          },
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

function keyName(t: ConnectTarget): string {
  return t.kind === "local" ? "local" : t.appName;
}

function keyCommand(t: ConnectTarget, endpoint: string): string {
  const where = t.kind === "local" ? "--local" : `--target ${t.target}`;
  return `node ${path.resolve(process.argv[1] ?? "bin/metamcp-databricks.js")} connect ${endpoint} ${where} --save-key < key.txt   (or paste it, then Ctrl-D)`;
}

async function runStdio(
  ctx: CommandContext,
  endpoint: string,
  target: ConnectTarget,
  opts: ConnectOptions,
  keyFile: string,
): Promise<number> {
  const key = resolveApiKey({ flag: opts.apiKey, flagFile: opts.apiKeyFile, defaultFile: keyFile });
  if (!key) throw missingKeyError(keyFile, keyCommand(target, endpoint));
  const url = opts.url ?? endpointUrl(await resolveAppUrl(target), endpoint);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError("bad_url", `--url ${url} is not a URL`, 2);
  }
  const tokens = await tokenSourceFor(target);
  const bridge = await startBridge({ url: parsed, tokens, apiKey: key.key, log: ctx.log });
  const stop = () => void bridge.close();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  await bridge.done;
  return 0;
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write("paste the MetaMCP API key, then Enter and Ctrl-D: ");
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** The CLI's absolute path, so clients started outside a shell (no PATH) still find it. */
async function whichCli(bin: string): Promise<string | undefined> {
  if (path.isAbsolute(bin)) return bin;
  const r = await execa("sh", ["-c", `command -v ${JSON.stringify(bin)}`], { reject: false });
  const found = String(r.stdout ?? "").trim();
  return r.exitCode === 0 && path.isAbsolute(found) ? found : undefined;
}
