import os from "node:os";
import path from "node:path";

/**
 * Configuration for the MCP clients people use, each in the shape its own documentation gives
 * (sources in docs/connect.md). Two ways in, per client:
 *
 * - `bridge` (recommended): the client runs `metamcp-databricks connect <endpoint> --stdio`, which
 *   fetches and renews the Databricks OAuth token itself; the config holds no secret at all (the
 *   MetaMCP key is read from a 0600 file).
 * - `headers` (short-lived): the client sends the headers itself; a Databricks OAuth token lasts about
 *   an hour, so this works until it expires. Secrets are referenced through the client's own variable
 *   syntax, never written into the file.
 */
export const CLIENTS = ["claude-code", "cursor", "vscode", "claude-desktop", "inspector"] as const;
export type ClientId = (typeof CLIENTS)[number];

export const CLIENT_NAMES: Record<ClientId, string> = {
  "claude-code": "Claude Code",
  cursor: "Cursor",
  vscode: "VS Code",
  "claude-desktop": "Claude Desktop",
  inspector: "MCP Inspector",
};

/** How the client starts the bridge: an absolute node and our bin, so it works from any folder. */
export interface BridgeLaunch {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

export interface ConnectionSpec {
  /** The key in the client's server map, e.g. `metamcp-dev-tools`. */
  serverName: string;
  /** The endpoint's streamable HTTP URL. */
  url: string;
  bridge: BridgeLaunch;
  /** Shell command that prints a current Databricks OAuth token (for the short-lived variant). */
  tokenCommand: string;
  /** The 0600 file holding the MetaMCP key. */
  keyFile: string;
  /**
   * The endpoint accepts the Databricks identity (docs/identity.md, "MCP clients"): the Databricks token is
   * all a client sends, no MetaMCP key anywhere in the config.
   */
  identity?: boolean;
}

/** Environment variables the short-lived header configs read (never literal secrets in a file). */
export const TOKEN_ENV = "DATABRICKS_TOKEN";
export const KEY_ENV = "METAMCP_API_KEY";

export interface ClientConfig {
  client: ClientId;
  variant: "bridge" | "headers";
  /** Where the client reads it (relative paths are relative to the project folder); none: no file form. */
  file?: string;
  /** The top-level key holding servers in that file. */
  serversKey: "mcpServers" | "servers";
  /** The server entry (and VS Code's `inputs`, when it needs any); none: command line only. */
  entry?: Record<string, unknown>;
  inputs?: Record<string, unknown>[];
  /** What to run or set before the client starts (short-lived variant), or how to launch it. */
  notes: string[];
}

/** Claude Desktop's file, per OS, as its documentation lists it. */
export function claudeDesktopConfigPath(
  platform: NodeJS.Platform = process.platform,
  env: Record<string, string | undefined> = process.env,
  home = os.homedir(),
): string {
  if (platform === "darwin")
    return path.join(home, "Library/Application Support/Claude/claude_desktop_config.json");
  if (platform === "win32")
    return path.join(env.APPDATA ?? path.join(home, "AppData/Roaming"), "Claude/claude_desktop_config.json");
  return path.join(env.XDG_CONFIG_HOME ?? path.join(home, ".config"), "Claude/claude_desktop_config.json");
}

export const PROJECT_FILES: Record<Exclude<ClientId, "claude-desktop">, string> = {
  "claude-code": ".mcp.json",
  cursor: ".cursor/mcp.json",
  vscode: ".vscode/mcp.json",
  inspector: "mcp-inspector.json",
};

function stdioEntry(spec: ConnectionSpec, withType: boolean): Record<string, unknown> {
  return {
    ...(withType ? { type: "stdio" } : {}),
    command: spec.bridge.command,
    args: spec.bridge.args,
    ...(spec.bridge.env && Object.keys(spec.bridge.env).length > 0 ? { env: spec.bridge.env } : {}),
  };
}

const tokenSetup = (spec: ConnectionSpec) =>
  `export ${TOKEN_ENV}=$(${spec.tokenCommand})   # valid about one hour: run again and restart the client when it expires`;
const keySetup = (spec: ConnectionSpec) =>
  spec.identity ? [] : [`export ${KEY_ENV}=$(cat ${spec.keyFile})`];
/** The headers a client sends itself: the Databricks token, and the MetaMCP key unless the identity does. */
const headersOf = (spec: ConnectionSpec, token: string, key: string) => ({
  Authorization: `Bearer ${token}`,
  ...(spec.identity ? {} : { "X-API-Key": key }),
});

export function clientConfig(
  client: ClientId,
  variant: "bridge" | "headers",
  spec: ConnectionSpec,
  options: { desktopConfigPath?: string } = {},
): ClientConfig | undefined {
  const bridge = variant === "bridge";
  switch (client) {
    case "claude-code":
      // .mcp.json: `type` stdio|http; `${VAR}` expands in command, args, env, url and headers.
      return {
        client,
        variant,
        file: PROJECT_FILES[client],
        serversKey: "mcpServers",
        entry: bridge
          ? stdioEntry(spec, true)
          : {
              type: "http",
              url: spec.url,
              headers: headersOf(spec, `\${${TOKEN_ENV}}`, `\${${KEY_ENV}}`),
            },
        notes: bridge
          ? ["Claude Code asks once to approve a project's .mcp.json servers; `/mcp` shows the connection."]
          : [tokenSetup(spec), ...keySetup(spec), "then start `claude` from this shell"],
      };
    case "cursor":
      // .cursor/mcp.json: command/args/env for stdio, url/headers for remote; `${env:NAME}` interpolates.
      return {
        client,
        variant,
        file: PROJECT_FILES[client],
        serversKey: "mcpServers",
        entry: bridge
          ? stdioEntry(spec, false)
          : {
              url: spec.url,
              headers: headersOf(spec, `\${env:${TOKEN_ENV}}`, `\${env:${KEY_ENV}}`),
            },
        notes: bridge
          ? ["Cursor: Settings → MCP lists the server; reload the window after writing the file."]
          : [tokenSetup(spec), ...keySetup(spec), "then start Cursor from this shell (`cursor .`)"],
      };
    case "vscode": {
      // .vscode/mcp.json: `servers` with `type` stdio|http, and `inputs` prompted once (password: true).
      if (bridge) {
        return {
          client,
          variant,
          file: PROJECT_FILES[client],
          serversKey: "servers",
          entry: stdioEntry(spec, true),
          notes: ["VS Code: open .vscode/mcp.json and press Start above the server (Copilot agent mode)."],
        };
      }
      const tokenInput = `${spec.serverName}-databricks-token`;
      const keyInput = `${spec.serverName}-api-key`;
      return {
        client,
        variant,
        file: PROJECT_FILES[client],
        serversKey: "servers",
        entry: {
          type: "http",
          url: spec.url,
          headers: headersOf(spec, `\${input:${tokenInput}}`, `\${input:${keyInput}}`),
        },
        inputs: [
          {
            type: "promptString",
            id: tokenInput,
            description: `Databricks OAuth token (valid about one hour): ${spec.tokenCommand}`,
            password: true,
          },
          ...(spec.identity
            ? []
            : [
                {
                  type: "promptString",
                  id: keyInput,
                  description: `MetaMCP API key (kept in ${spec.keyFile})`,
                  password: true,
                },
              ]),
        ],
        notes: [
          `VS Code prompts for ${spec.identity ? "the token" : "both values"} when the server starts; the token lasts about an hour, then restart the server and paste a new one`,
        ],
      };
    }
    case "claude-desktop":
      // claude_desktop_config.json holds local (stdio) servers only: no headers variant exists.
      if (!bridge) return undefined;
      return {
        client,
        variant,
        file: options.desktopConfigPath ?? claudeDesktopConfigPath(),
        serversKey: "mcpServers",
        entry: stdioEntry(spec, false),
        notes: ["Quit and reopen Claude Desktop after writing the file (it reads it at start)."],
      };
    case "inspector":
      // The Inspector's --config file: `mcpServers`, `type` stdio|http|sse, `headers` for HTTP.
      return {
        client,
        variant,
        serversKey: "mcpServers",
        // No variable expansion in its file: the short-lived variant is a command line only.
        ...(bridge ? { file: PROJECT_FILES[client], entry: stdioEntry(spec, true) } : {}),
        notes: bridge
          ? [
              `npx @modelcontextprotocol/inspector --config ${PROJECT_FILES[client]} --server ${spec.serverName}`,
            ]
          : [
              `npx @modelcontextprotocol/inspector --cli --server-url ${spec.url} --transport http --header "Authorization: Bearer $(${spec.tokenCommand})"${spec.identity ? "" : ` --header "X-API-Key: $(cat ${spec.keyFile})"`} -- --method tools/list`,
            ],
      };
  }
}

/** The whole file content for one client: the server map with our entry (and inputs), merged later. */
export function configDocument(
  config: ClientConfig,
  serverName: string,
): Record<string, unknown> | undefined {
  if (!config.entry) return undefined;
  return {
    ...(config.inputs ? { inputs: config.inputs } : {}),
    [config.serversKey]: { [serverName]: config.entry },
  };
}
