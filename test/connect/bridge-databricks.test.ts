import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { CLI_BIN } from "../support/cli.js";
import { DatabricksCliDouble } from "../support/databricks-cli-double.js";
import { DatabricksEmulator } from "../support/databricks-emulator.js";
import { type McpApp, startMcpApp } from "./support/mcp-app.js";

/**
 * `connect --stdio` for a Databricks target: a real MCP SDK client spawns the built CLI, which reaches
 * a real SDK MCP server through the emulated Apps proxy with the token the Databricks CLI (double)
 * hands out for a browser-login profile.
 */
const API_KEY = "sk_mt_test_0123456789abcdef";
const ENDPOINT = "tools";

describe("connect --stdio to a Databricks target", () => {
  let dir: string;
  let app: McpApp;
  let emulator: DatabricksEmulator;
  let double: DatabricksCliDouble;
  let keyFile: string;
  let home: string;
  let client: Client | undefined;
  let stderr = "";

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "mmdb-connect-dbx-"));
    app = await startMcpApp({ endpoint: ENDPOINT, apiKey: API_KEY });
    emulator = await new DatabricksEmulator(app.url).start();
    home = path.join(dir, "home");
    mkdirSync(home, { recursive: true });
    writeFileSync(
      path.join(home, ".databrickscfg"),
      `[u2m]\nhost = ${emulator.url}\nauth_type = databricks-cli\n\n[pat]\nhost = ${emulator.url}\ntoken = dapi0123456789abcdef0123456789abcdef\n`,
    );
    double = new DatabricksCliDouble(path.join(dir, "double"), {
      version: "1.4.0",
      host: emulator.url,
      fsRoot: emulator.fsRoot,
      adminToken: emulator.issueUserToken(24 * 3600),
      userToken: emulator.issueUserToken(),
    });
    keyFile = path.join(dir, "key");
    writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 });
  });

  afterEach(async () => {
    await client?.close().catch(() => undefined);
    client = undefined;
  });

  afterAll(async () => {
    await emulator.close();
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const spawnBridge = async (profile: string) => {
    stderr = "";
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        CLI_BIN,
        "connect",
        ENDPOINT,
        "--stdio",
        "--profile",
        profile,
        "--url",
        `${emulator.appUrl}/metamcp/${ENDPOINT}/mcp`,
        "--api-key-file",
        keyFile,
      ],
      env: { HOME: home, ...double.env(), NO_COLOR: "1" },
      stderr: "pipe",
    });
    transport.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString("utf8");
    });
    const c = new Client({ name: "test-client", version: "1.0.0" });
    await c.connect(transport);
    client = c;
    return c;
  };

  it("initialize, tools/list, tools/call through the proxy; the key goes in X-API-Key, never to stderr", async () => {
    const c = await spawnBridge("u2m");
    expect(c.getServerVersion()?.name).toBe("fake-metamcp");
    const tools = await c.listTools();
    expect(tools.tools.map((t) => t.name).sort()).toEqual(["announce_then_sleep", "echo", "sleep"]);
    const r = await c.callTool({ name: "echo", arguments: { text: "hello" } });
    expect(r.content).toEqual([{ type: "text", text: "hello" }]);
    // Only the MetaMCP key was offered as a key: the proxy's token never reached the app as one.
    expect(app.seenKeys.length).toBeGreaterThan(0);
    expect(app.seenKeys.every((k) => k.key === API_KEY && k.accepted)).toBe(true);
    expect(double.commands()).toContainEqual(["auth", "token", "--profile", "u2m"]);
    await c.close();
    expect(stderr).toContain("bridge ready");
    expect(stderr).not.toContain(API_KEY);
    expect(stderr).not.toContain(double.scenario().userToken);
  });

  it("renews the token before it expires: calls across several short-lived tokens all succeed", async () => {
    // The SDK renews 40 s before expiry: tokens reported as valid for 41 s are renewed every ~1 s.
    const tokens = Array.from({ length: 30 }, () => emulator.issueUserToken(41));
    double.update({ userTokens: tokens, userTokenTtlSeconds: 41 });
    double.clearCalls();
    const c = await spawnBridge("u2m");
    const failures: string[] = [];
    const started = Date.now();
    let calls = 0;
    while (Date.now() - started < 4000) {
      calls++;
      try {
        const r = await c.callTool({ name: "echo", arguments: { text: `n${calls}` } });
        if (r.isError) failures.push(JSON.stringify(r.content));
      } catch (err) {
        failures.push(String(err));
      }
    }
    expect(failures).toEqual([]);
    const renewals = double.commands().filter((a) => a[0] === "auth" && a[1] === "token").length;
    expect(renewals).toBeGreaterThanOrEqual(3);
    double.update({ userTokens: undefined, userTokenTtlSeconds: undefined });
  });

  it("a token the proxy stops accepting is replaced at once: no call fails", async () => {
    // The CLI says an hour, but the proxy drops the first token after 1 s (revoked, or a clock skew).
    const short = emulator.issueUserToken(1);
    double.update({ userTokens: [short, emulator.issueUserToken()], userTokenTtlSeconds: 3600 });
    const c = await spawnBridge("u2m");
    await c.callTool({ name: "echo", arguments: { text: "before" } });
    await waitFor(() => (emulator.tokens.verify(short) ? undefined : true), {
      timeoutMs: 5000,
      intervalMs: 50,
      what: "the first token to expire",
    });
    const r = await c.callTool({ name: "echo", arguments: { text: "after" } });
    expect(r.content).toEqual([{ type: "text", text: "after" }]);
    double.update({ userTokens: undefined });
  });

  it("a call whose answer the proxy cuts mid-stream fails at once, clearly; the next call works", async () => {
    emulator.proxyLimits.requestTimeoutMs = 1500;
    try {
      const c = await spawnBridge("u2m");
      const t0 = Date.now();
      const err = await c.callTool({ name: "announce_then_sleep", arguments: { ms: 5000 } }).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err?.message).toMatch(
        /the connection to MetaMCP was cut after \d+ s, before the result of tools\/call arrived \(the stream broke/,
      );
      expect(Date.now() - t0).toBeLessThan(4000);
      const next = await c.callTool({ name: "echo", arguments: { text: "next" } });
      expect(next.content).toEqual([{ type: "text", text: "next" }]);
      expect(stderr).toMatch(/lost its response stream/);
    } finally {
      emulator.proxyLimits.requestTimeoutMs = 120_000;
    }
  });

  it("the app unreachable for a while: that call fails naming it, the session goes on when it is back", async () => {
    const c = await spawnBridge("u2m");
    await c.callTool({ name: "echo", arguments: { text: "up" } });
    await emulator.stopAppHost();
    try {
      await expect(c.callTool({ name: "echo", arguments: { text: "down" } })).rejects.toThrow(
        /cannot reach https?:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/,
      );
    } finally {
      await emulator.restartAppHost();
    }
    const back = await c.callTool({ name: "echo", arguments: { text: "back" } });
    expect(back.content).toEqual([{ type: "text", text: "back" }]);
  });

  it("a PAT profile is refused up front with what to do instead", async () => {
    await expect(spawnBridge("pat")).rejects.toThrow();
    expect(stderr).toMatch(/personal access token, which the Apps proxy does not accept/);
    expect(stderr).toMatch(/databricks auth login/);
  });

  it("a wrong MetaMCP key fails the call with a message that names the key", async () => {
    writeFileSync(keyFile, "sk_mt_wrong\n", { mode: 0o600 });
    try {
      await expect(spawnBridge("u2m")).rejects.toThrow(/MetaMCP API key/);
    } finally {
      writeFileSync(keyFile, `${API_KEY}\n`, { mode: 0o600 });
    }
  });
});
