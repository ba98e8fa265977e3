import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { CLI_BIN } from "../support/cli.js";
import { type DatabricksWorld, startDatabricksWorld } from "../support/databricks-world.js";

/**
 * `connect <endpoint>` writes and prints each client's configuration. Every output is parsed back and
 * checked against the shape the client's documentation gives (docs/connect.md cites them); the key is
 * kept in a 0600 file and never appears in any output or written file.
 */
const KEY = "sk_mt_SecretKeyForConfigs_1234567890";

describe("connect: client configurations", () => {
  let root: string;
  let w: DatabricksWorld;
  let appName: string;
  let connectDir: string;
  let project: string;
  let xdg: string;
  const run = (args: string[], extra: Record<string, string> = {}, input?: string) =>
    input === undefined
      ? w.run(["connect", ...args], { METAMCP_CONNECT_DIR: connectDir, XDG_CONFIG_HOME: xdg, ...extra })
      : import("../support/cli.js").then(({ runCli }) =>
          runCli(["connect", ...args], {
            cwd: project,
            env: w.env({ METAMCP_CONNECT_DIR: connectDir, XDG_CONFIG_HOME: xdg, ...extra }),
            input,
          }),
        );

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), "mmdb-connect-cfg-"));
    w = await startDatabricksWorld(root);
    appName = loadConfig({ env: { DEV_USER: "someone" }, cwd: w.project }).appName;
    w.emulator.addApp(appName, "ACTIVE");
    connectDir = path.join(root, "connect");
    xdg = path.join(root, "xdg");
    project = w.project;
  });

  afterAll(async () => {
    await w.close();
    rmSync(root, { recursive: true, force: true });
  });

  const keyFile = () => path.join(connectDir, `${appName}.key`);
  const appUrl = () => `https://${new URL(w.emulator.appUrl).host}`;

  it("--save-key keeps the key in a 0600 file and never prints it", async () => {
    const r = await run(["tools", "--save-key", "--profile", "u2m"], {}, `${KEY}\n`);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(readFileSync(keyFile(), "utf8").trim()).toBe(KEY);
    expect(statSync(keyFile()).mode & 0o777).toBe(0o600);
    expect(statSync(connectDir).mode & 0o777).toBe(0o700);
    expect(r.stdout + r.stderr).not.toContain(KEY);
    expect(r.stderr).toContain(`saved in ${keyFile()} (mode 0600)`);
  });

  it("--write: Claude Code, Cursor, VS Code and Inspector files, each in its documented shape, no secret in them", async () => {
    // A file of the user's with another server: kept as it was.
    mkdirSync(path.join(project, ".cursor"), { recursive: true });
    writeFileSync(
      path.join(project, ".cursor/mcp.json"),
      JSON.stringify({ mcpServers: { theirs: { command: "their-server" } } }),
    );
    const r = await run(["tools", "--write", "--profile", "u2m"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const url = `${appUrl()}/metamcp/tools/mcp`;
    const name = "metamcp-dev-tools";
    const bridgeArgs = [
      CLI_BIN,
      "connect",
      "tools",
      "--stdio",
      "--target",
      "dev",
      "--profile",
      "u2m",
      "--url",
      url,
      "--api-key-file",
      keyFile(),
    ];
    const read = (f: string) => JSON.parse(readFileSync(path.join(project, f), "utf8"));

    // Claude Code .mcp.json: mcpServers.<name> = {type: "stdio", command, args[, env]}.
    const claude = read(".mcp.json");
    expect(Object.keys(claude)).toEqual(["mcpServers"]);
    expect(claude.mcpServers[name]).toMatchObject({
      type: "stdio",
      command: process.execPath,
      args: bridgeArgs,
    });
    // The Databricks CLI by absolute path: a client started outside a shell has no PATH to find it.
    expect(claude.mcpServers[name].env.DATABRICKS_CLI).toBe(path.join(w.double.binDir, "databricks"));

    // Cursor .cursor/mcp.json: mcpServers.<name> = {command, args, env}; the user's server kept.
    const cursor = read(".cursor/mcp.json");
    expect(cursor.mcpServers.theirs).toEqual({ command: "their-server" });
    expect(cursor.mcpServers[name]).toMatchObject({ command: process.execPath, args: bridgeArgs });
    expect(cursor.mcpServers[name]).not.toHaveProperty("type");

    // VS Code .vscode/mcp.json: servers.<name> = {type: "stdio", command, args}; names match its pattern.
    const vscode = read(".vscode/mcp.json");
    expect(Object.keys(vscode)).toEqual(["servers"]);
    expect(name).toMatch(/^[a-zA-Z][a-zA-Z0-9_-]*$/);
    expect(vscode.servers[name]).toMatchObject({
      type: "stdio",
      command: process.execPath,
      args: bridgeArgs,
    });

    // MCP Inspector --config file: mcpServers.<name> = {type: "stdio", command, args}.
    const inspector = read("mcp-inspector.json");
    expect(inspector.mcpServers[name]).toMatchObject({ type: "stdio", command: process.execPath });
    expect(r.stdout).toContain(
      `npx @modelcontextprotocol/inspector --config mcp-inspector.json --server ${name}`,
    );

    // Claude Desktop's user-wide file is not touched unless asked for.
    expect(existsSync(path.join(xdg, "Claude/claude_desktop_config.json"))).toBe(false);

    for (const f of [".mcp.json", ".cursor/mcp.json", ".vscode/mcp.json", "mcp-inspector.json"]) {
      expect(readFileSync(path.join(project, f), "utf8")).not.toContain(KEY);
    }
    expect(r.stdout).toMatch(/created: .*\.mcp\.json/);
    expect(r.stdout).toMatch(/added: .*\.cursor\/mcp\.json/);

    // Written again: the same entry is replaced, not duplicated.
    const again = await run(["tools", "--write", "--profile", "u2m", "--client", "cursor"]);
    expect(again.stdout).toMatch(/updated: .*\.cursor\/mcp\.json/);
    expect(Object.keys(read(".cursor/mcp.json").mcpServers)).toEqual(["theirs", name]);
  });

  it("Claude Desktop: written only when named, in its OS location, stdio only", async () => {
    const r = await run(["tools", "--write", "--client", "claude-desktop", "--profile", "u2m", "--headers"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const file = path.join(xdg, "Claude/claude_desktop_config.json");
    const doc = JSON.parse(readFileSync(file, "utf8"));
    expect(doc.mcpServers["metamcp-dev-tools"]).toMatchObject({ command: process.execPath });
    expect(doc.mcpServers["metamcp-dev-tools"].args).toContain("--stdio");
    // Its config file has no remote-server form: no short-lived variant is offered.
    expect(r.stdout).not.toMatch(/Claude Desktop \(SHORT-LIVED/);
  });

  it("--headers: the short-lived variants reference secrets through each client's own variables", async () => {
    const r = await run(["tools", "--headers", "--profile", "u2m", "--json"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      url: string;
      configs: {
        client: string;
        variant: string;
        entry?: Record<string, unknown>;
        inputs?: unknown[];
        notes: string[];
      }[];
    };
    const headers = (c: string) => out.configs.find((x) => x.client === c && x.variant === "headers")!;
    expect(headers("claude-code").entry).toEqual({
      type: "http",
      url: out.url,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the client's own variable syntax, literally
      headers: { Authorization: "Bearer ${DATABRICKS_TOKEN}", "X-API-Key": "${METAMCP_API_KEY}" },
    });
    expect(headers("cursor").entry).toEqual({
      url: out.url,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: the client's own variable syntax, literally
      headers: { Authorization: "Bearer ${env:DATABRICKS_TOKEN}", "X-API-Key": "${env:METAMCP_API_KEY}" },
    });
    const vs = headers("vscode");
    expect(vs.entry).toMatchObject({ type: "http", url: out.url });
    expect(vs.inputs).toEqual([
      expect.objectContaining({
        type: "promptString",
        id: "metamcp-dev-tools-databricks-token",
        password: true,
      }),
      expect.objectContaining({ type: "promptString", id: "metamcp-dev-tools-api-key", password: true }),
    ]);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the client's own variable syntax, literally
    expect(JSON.stringify(vs.entry)).toContain("${input:metamcp-dev-tools-databricks-token}");
    expect(headers("inspector").entry).toBeUndefined();
    expect(headers("inspector").notes[0]).toMatch(/--transport http --header "Authorization: Bearer \$\(/);
    expect(out.configs.some((c) => c.client === "claude-desktop" && c.variant === "headers")).toBe(false);
    expect(r.stdout).not.toContain(KEY);
  });

  it("--print-token prints a token the proxy takes; the hint for it works from any folder", async () => {
    const r = await run(["tools", "--print-token", "--profile", "u2m"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const token = r.stdout.trim();
    expect(token).toBe(w.double.scenario().userToken);
    const human = await run(["tools", "--headers", "--profile", "u2m", "--client", "claude-code"]);
    expect(human.stdout).toContain(
      `export DATABRICKS_TOKEN=$(${process.execPath} ${CLI_BIN} connect tools --print-token`,
    );
    expect(human.stdout).toContain("SHORT-LIVED");
    expect(human.stdout).not.toContain(token);
  });

  it("refuses a PAT profile, a bad endpoint name, an unknown client and a key file others can read", async () => {
    const pat = await run(["tools", "--profile", "pat"]);
    expect(pat.exitCode).toBe(2);
    expect(pat.stderr).toMatch(/personal access token/);
    const bad = await run(["no/such", "--profile", "u2m"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/not a MetaMCP endpoint name/);
    const client = await run(["tools", "--client", "emacs", "--profile", "u2m"]);
    expect(client.exitCode).toBe(2);
    expect(client.stderr).toMatch(/unknown client "emacs"/);
    const open = path.join(root, "open.key");
    writeFileSync(open, KEY, { mode: 0o644 });
    const r = await run([
      "tools",
      "--stdio",
      "--profile",
      "u2m",
      "--url",
      "http://127.0.0.1:9/x",
      "--api-key-file",
      open,
    ]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/readable by others \(mode 644\)/);
    expect(r.stderr).not.toContain(KEY);
  });

  it("without a saved key, says how to save one (with a command that works in a fresh clone)", async () => {
    const r = await run(["tools", "--profile", "u2m"], { METAMCP_CONNECT_DIR: path.join(root, "empty") });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/No MetaMCP API key saved yet/);
    expect(r.stdout).toMatch(/node .*bin\/metamcp-databricks\.js connect tools --target dev --save-key/);
    expect(r.stdout).not.toMatch(/npx metamcp-databricks/);
  });
});
