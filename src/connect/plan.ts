import path from "node:path";
import { EXIT, UserError } from "../errors.js";
import {
  CLIENT_NAMES,
  CLIENTS,
  type ClientConfig,
  type ClientId,
  type ConnectionSpec,
  clientConfig,
  configDocument,
} from "./clients.js";
import type { ConnectTarget } from "./target.js";
import { targetLabel } from "./target.js";

export interface SpecInput {
  endpoint: string;
  target: ConnectTarget;
  /** The endpoint's streamable HTTP URL. */
  url: string;
  keyFile: string;
  /** Absolute paths: the node that runs us and our bin (the clients start the bridge with these). */
  node: string;
  bin: string;
  /** Absolute path of the Databricks CLI, when found: GUI apps (Claude Desktop) do not get the shell's PATH. */
  databricksCliPath?: string;
  /** The endpoint accepts the Databricks identity: no MetaMCP key in the config, the bridge sends none. */
  identity?: boolean;
}

/** Everything a client needs to start the bridge, with no secret in it. */
export function connectionSpec(input: SpecInput): ConnectionSpec {
  const { endpoint, target } = input;
  const targetArgs =
    target.kind === "local"
      ? [
          "--local",
          "--state-dir",
          path.resolve(target.stateDir),
          // The bridge mints tokens for the same user as this command did.
          ...(target.user ? ["--user", target.user] : []),
        ]
      : ["--target", target.target, "--profile", target.profile];
  const common = [input.bin, "connect", endpoint];
  return {
    serverName: `metamcp-${targetLabel(target)}-${endpoint}`,
    url: input.url,
    keyFile: input.keyFile,
    ...(input.identity ? { identity: true } : {}),
    bridge: {
      command: input.node,
      args: [
        ...common,
        "--stdio",
        ...targetArgs,
        "--url",
        input.url,
        ...(input.identity ? ["--auth", "identity"] : ["--api-key-file", input.keyFile]),
      ],
      ...(target.kind === "databricks" && input.databricksCliPath
        ? { env: { DATABRICKS_CLI: input.databricksCliPath } }
        : {}),
    },
    tokenCommand: [input.node, ...common, "--print-token", ...targetArgs].map(shellQuote).join(" "),
  };
}

/** The command that saves a MetaMCP key for this app (our bin by absolute path: no PATH needed). */
export function saveKeyCommand(bin: string, target: ConnectTarget, endpoint: string): string {
  const where = target.kind === "local" ? "--local" : `--target ${target.target}`;
  return `node ${bin} connect ${endpoint} ${where} --save-key < key.txt   (or paste it, then Ctrl-D)`;
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function parseClients(list: string | undefined, fallback: readonly ClientId[]): ClientId[] {
  if (!list || list === "all") return [...fallback];
  const asked = list.split(",").map((s) => s.trim());
  for (const c of asked) {
    if (!(CLIENTS as readonly string[]).includes(c)) {
      throw new UserError(
        "unknown_client",
        `unknown client "${c}"`,
        EXIT.input,
        `choose among ${CLIENTS.join(", ")} (comma-separated), or all`,
      );
    }
  }
  return asked as ClientId[];
}

export function clientConfigs(
  spec: ConnectionSpec,
  clients: ClientId[],
  variants: ("bridge" | "headers")[],
  options: { desktopConfigPath?: string } = {},
): ClientConfig[] {
  return clients.flatMap((c) =>
    variants.flatMap((v) => {
      const cfg = clientConfig(c, v, spec, options);
      return cfg ? [cfg] : [];
    }),
  );
}

/** The human form: per client, the file, the JSON to put in it and what else to do. */
export function renderConfigs(configs: ClientConfig[], spec: ConnectionSpec): string {
  const out: string[] = [];
  for (const cfg of configs) {
    const label =
      cfg.variant === "bridge"
        ? "(recommended: the bridge renews the Databricks token itself)"
        : "(SHORT-LIVED: the Databricks OAuth token in it lasts about an hour)";
    out.push(`## ${CLIENT_NAMES[cfg.client]} ${label}`);
    const doc = configDocument(cfg, spec.serverName);
    if (doc && cfg.file) {
      out.push(`${cfg.file}:`);
      out.push(JSON.stringify(doc, null, 2));
    }
    for (const n of cfg.notes) out.push(n);
    out.push("");
  }
  return out.join("\n").trimEnd();
}
