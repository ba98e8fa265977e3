import { readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN } from "../support/cli.js";
import { FAKE_METAMCP_API_KEY } from "../support/fake-app-tree.js";
import { useLocalStack } from "../support/local-rig.js";

/**
 * `connect --stdio --local` end to end: a real MCP SDK client spawns the built CLI, which goes through
 * the local stand-in's Apps proxy (user tokens of 4 s, requests cut at 3 s, event streams at 2 s) to
 * the fake app tree's real MCP endpoint (keys checked in upstream's order).
 */
describe("connect --stdio --local", () => {
  const stack = useLocalStack("connect-local", {
    env: (work) => ({ METAMCP_CONNECT_DIR: path.join(work, "connect") }),
  });
  let client: Client | undefined;
  let stderr = "";
  const cli = (args: string[]) => stack.cli(args);

  beforeAll(async () => {
    await stack.up(["--token-ttl", "4", "--request-timeout", "3", "--stream-timeout", "2"]);
  });

  afterEach(async () => {
    await client?.close().catch(() => undefined);
    client = undefined;
  });

  const spawnBridge = async (
    clientEnv: Record<string, string> = { METAMCP_API_KEY: FAKE_METAMCP_API_KEY },
    extraArgs: string[] = [],
  ) => {
    stderr = "";
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [
        CLI_BIN,
        "connect",
        "demo",
        "--stdio",
        "--local",
        "--state-dir",
        path.join(stack.work, "state"),
        ...extraArgs,
      ],
      cwd: os.tmpdir(), // as a client starts it: from anywhere
      env: { PATH: process.env.PATH ?? "", NO_COLOR: "1", ...clientEnv },
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

  it("initialize, tools/list, tools/call; across token expiries and stream cuts no call fails", async () => {
    const c = await spawnBridge();
    const tools = await c.listTools();
    expect(tools.tools.map((t) => t.name)).toEqual(expect.arrayContaining(["echo", "sleep", "whoami"]));
    const who = await c.callTool({ name: "whoami", arguments: {} });
    const seen = JSON.parse((who.content as { text: string }[])[0]!.text) as Record<string, unknown>;
    // The MetaMCP key arrived as X-API-Key; the proxy named the signed-in user.
    expect(JSON.stringify(seen)).toContain("metamcp-key");
    expect(JSON.stringify(seen)).toContain("local-user@example.com");

    // 9 s of calls: two 4 s tokens lapse and the 2 s event stream is cut four times on the way.
    const failures: string[] = [];
    let calls = 0;
    const started = Date.now();
    while (Date.now() - started < 9000) {
      calls++;
      try {
        const r =
          calls % 5 === 0
            ? await c.callTool({ name: "sleep", arguments: { ms: 1500 } })
            : await c.callTool({ name: "echo", arguments: { text: `n${calls}` } });
        if (r.isError) failures.push(JSON.stringify(r.content));
      } catch (err) {
        failures.push(String(err));
      }
    }
    expect(failures).toEqual([]);
    expect(calls).toBeGreaterThan(10);
  });

  it("a call the proxy cuts fails at once with a clear error; the next call works", async () => {
    const c = await spawnBridge();
    const t0 = Date.now();
    const cut = await c.callTool({ name: "sleep", arguments: { ms: 6000 } }).then(
      (r) => ({ ok: true as const, r }),
      (err: Error) => ({ ok: false as const, err }),
    );
    const elapsed = Date.now() - t0;
    expect(cut.ok).toBe(false);
    if (!cut.ok) {
      expect(cut.err.message).toMatch(
        /the connection to MetaMCP was cut after \d+ s, before the result of tools\/call/,
      );
      expect(cut.err.message).toMatch(/120 s/);
      expect(cut.err.message).toMatch(/the next call works/);
    }
    // At the proxy's cut (3 s), not at the client's own 60 s timeout nor the tool's 6 s.
    expect(elapsed).toBeLessThan(5500);
    const next = await c.callTool({ name: "echo", arguments: { text: "after the cut" } });
    expect(next.content).toEqual([{ type: "text", text: "after the cut" }]);
    expect(stderr).toMatch(/tools\/call \(id \d+\) failed: the connection to MetaMCP was cut/);
  });

  it("no token or key ever reaches stderr or the state dir's logs", async () => {
    const c = await spawnBridge();
    await c.callTool({ name: "echo", arguments: { text: "x" } });
    await c.close();
    expect(stderr).not.toContain(FAKE_METAMCP_API_KEY);
    expect(stderr).not.toMatch(/dapi-local-\w{10,}/);
    const log = readFileSync(path.join(stack.work, "state/local.log"), "utf8");
    expect(log).not.toContain(FAKE_METAMCP_API_KEY);
  });

  it("prints the local configuration with the stand-in's URL", async () => {
    const r = await cli(["--json", "connect", "demo", "--local"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      url: string;
      serverName: string;
      configs: { entry?: { args?: string[] } }[];
    };
    expect(out.url).toBe(`http://127.0.0.1:${stack.port}/metamcp/demo/mcp`);
    expect(out.serverName).toBe("metamcp-local-demo");
    expect(out.configs[0]!.entry!.args).toEqual(
      expect.arrayContaining(["--stdio", "--local", "--state-dir", path.join(stack.work, "state")]),
    );
  });

  describe("an endpoint that accepts the Databricks identity: no MetaMCP key anywhere", () => {
    // No key in the environment, and an empty key folder: nothing to find.
    const keyless = () => ({ METAMCP_CONNECT_DIR: path.join(stack.work, "no-keys") });

    it("with the identity off, the keyless bridge stops and says what to do (save a key, or turn the identity on)", async () => {
      const r = await stack.cli(
        ["connect", "demo", "--stdio", "--local", "--state-dir", path.join(stack.work, "state")],
        { env: keyless(), timeoutMs: 60_000 },
      );
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain("no MetaMCP API key");
      expect(r.stderr).toMatch(/connect demo --local --identity on/);
    });

    it("`connect demo --identity on` (the owner, by their Databricks token), then the bridge works with the token alone", async () => {
      const on = await cli(["connect", "demo", "--local", "--identity", "on"]);
      expect(on.exitCode, on.stderr).toBe(0);
      expect(on.stdout).toContain("demo now accepts the Databricks identity");
      const c = await spawnBridge(keyless());
      const who = await c.callTool({ name: "whoami", arguments: {} });
      const seen = JSON.parse((who.content as { text: string }[])[0]!.text) as Record<string, unknown>;
      expect(seen["x-api-key"]).toBe("absent");
      expect(seen.databricksIdentity).toBe("local-user@example.com");
      expect(seen.authMethod).toBe("api_key");
      expect((await c.callTool({ name: "echo", arguments: { text: "keyless" } })).content).toEqual([
        { type: "text", text: "keyless" },
      ]);
      expect(stderr).toContain("demo accepts the Databricks identity");
    });

    it("the printed configs carry no key: `--auth identity` for the bridge, no X-API-Key header, no save-key step", async () => {
      const r = await cli(["--json", "connect", "demo", "--local", "--headers"]);
      expect(r.exitCode, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as {
        auth: string;
        configs: {
          variant: string;
          entry?: { args?: string[]; headers?: Record<string, string> };
          inputs?: unknown[];
          notes: string[];
        }[];
      };
      expect(out.auth).toBe("identity");
      expect(out.configs.length).toBeGreaterThan(0);
      for (const cfg of out.configs) {
        const text = JSON.stringify(cfg);
        expect(text).not.toContain("X-API-Key");
        expect(text).not.toContain("api-key");
        expect(text).not.toContain("METAMCP_API_KEY");
      }
      const bridges = out.configs.filter((cfg) => cfg.variant === "bridge" && cfg.entry?.args);
      expect(bridges.length, "a bridge config with args").toBeGreaterThan(0);
      for (const cfg of bridges)
        expect(cfg.entry?.args).toEqual(expect.arrayContaining(["--auth", "identity"]));
      const human = await cli(["connect", "demo", "--local"]);
      expect(human.stdout).toContain(
        "demo accepts the Databricks identity (set by its owner): no MetaMCP API key needed",
      );
      expect(human.stdout).not.toContain("--save-key");
    });

    it("`--identity off` puts the key back in the configs; the keyless bridge with --auth identity is then refused clearly", async () => {
      const off = await cli(["connect", "demo", "--local", "--identity", "off"]);
      expect(off.exitCode, off.stderr).toBe(0);
      expect(off.stdout).toContain("demo no longer accepts the Databricks identity");
      const r = await cli(["--json", "connect", "demo", "--local"]);
      const out = JSON.parse(r.stdout) as { auth: string; configs: { entry?: { args?: string[] } }[] };
      expect(out.auth).toBe("key");
      expect(out.configs[0]!.entry!.args).toEqual(expect.arrayContaining(["--api-key-file"]));
      const c = await spawnBridge(keyless(), ["--auth", "identity"]).catch((err: Error) => err);
      const message = c instanceof Error ? c.message : "";
      if (!(c instanceof Error)) await c.close();
      expect(`${message}\n${stderr}`).toMatch(/does not accept the Databricks identity/);
    });
  });
});
