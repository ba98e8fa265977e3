import { existsSync } from "node:fs";
import type { Logger } from "../log/logger.js";
import { defaultKeyFile, writeKeyFile } from "./api-key.js";
import { CLIENTS, type ClientId } from "./clients.js";
import { type EndpointIdentityState, parseAuthMode, parseOnOff, setEndpointIdentity } from "./identity.js";
import { decideIdentity } from "./identity-plan.js";
import { clientConfigs, connectionSpec, parseClients, saveKeyCommand } from "./plan.js";
import {
  type ConnectTarget,
  databricksCliPath,
  endpointUrl,
  resolveAppUrl,
  targetLabel,
  tokenSourceFor,
} from "./target.js";
import { type WriteResult, writeClientConfig } from "./write-config.js";

/** `connect`'s flags, as parsed; exactly one mode runs (token, bridge, identity switch, key save, configs). */
export interface ConnectRequest {
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

export interface ConnectIo {
  log: Logger;
  /** The command line that runs us again (client configs start the bridge with it). */
  bin: string;
  /** Where project-level client configs are written. */
  cwd: string;
  /** The API key for --save-key when not given by flag (the terminal's stdin). */
  readKey: () => Promise<string>;
}

/** Project-level files are written by default; Claude Desktop's user-wide file only when named. */
const WRITE_DEFAULT: ClientId[] = ["claude-code", "cursor", "vscode", "inspector"];

export type ConnectOutcome =
  | { mode: "token"; token: string }
  | { mode: "bridge" }
  | { mode: "identity"; state: EndpointIdentityState }
  | { mode: "key-saved"; keyFile: string; next: string }
  | {
      mode: "configs";
      result: ConnectResult;
      spec: ReturnType<typeof connectionSpec>;
      identityWhy: string;
      saveKey: string;
    };

export interface ConnectResult {
  endpoint: string;
  target: string;
  url: string;
  serverName: string;
  keyFile: string;
  hasKey: boolean;
  auth: "identity" | "key";
  configs: ReturnType<typeof clientConfigs>;
  written: WriteResult[];
}

/** `connect <endpoint>`: one MCP endpoint of the app behind the Apps proxy, for a client (docs/connect.md). */
export async function connect(
  endpoint: string,
  target: ConnectTarget,
  opts: ConnectRequest,
  io: ConnectIo,
): Promise<ConnectOutcome> {
  const keyFile = defaultKeyFile(target.kind === "local" ? "local" : target.appName);
  // The one place besides `local token` that gives out a token, on purpose.
  if (opts.printToken) return { mode: "token", token: await (await tokenSourceFor(target)).token() };
  const auth = parseAuthMode(opts.auth);
  if (opts.stdio) {
    const { runStdioBridge } = await import("./stdio.js");
    await runStdioBridge({ endpoint, target, keyFile, ...opts, auth, log: io.log, bin: io.bin });
    return { mode: "bridge" };
  }
  if (opts.identity !== undefined) {
    const accept = parseOnOff(opts.identity);
    const appUrl = await resolveAppUrl(target);
    const state = await setEndpointIdentity(appUrl, endpoint, await tokenSourceFor(target), accept);
    return { mode: "identity", state };
  }
  if (opts.saveKey) {
    writeKeyFile(keyFile, opts.apiKey ?? (await io.readKey()));
    return {
      mode: "key-saved",
      keyFile,
      next: saveKeyCommand(io.bin, target, endpoint).split(" --save-key")[0]!,
    };
  }
  const appUrl = await resolveAppUrl(target);
  const url = endpointUrl(appUrl, endpoint);
  const identity = await decideIdentity({ auth, appUrl, endpoint, target, log: io.log });
  const spec = connectionSpec({
    endpoint,
    target,
    url,
    keyFile,
    node: process.execPath,
    bin: io.bin,
    databricksCliPath:
      target.kind === "databricks" ? await databricksCliPath(target.databricksCli) : undefined,
    identity: identity.accepts,
  });
  const clients = parseClients(opts.client, opts.write ? WRITE_DEFAULT : CLIENTS);
  const configs = clientConfigs(spec, clients, opts.headers ? ["bridge", "headers"] : ["bridge"]);
  const written = opts.write
    ? configs
        .filter((c) => c.variant === "bridge")
        .flatMap((c) => writeClientConfig(c, spec.serverName, io.cwd) ?? [])
    : [];
  return {
    mode: "configs",
    spec,
    identityWhy: identity.why,
    saveKey: saveKeyCommand(io.bin, target, endpoint),
    result: {
      endpoint,
      target: targetLabel(target),
      url,
      serverName: spec.serverName,
      keyFile,
      hasKey: existsSync(keyFile),
      auth: identity.accepts ? "identity" : "key",
      configs,
      written,
    },
  };
}
