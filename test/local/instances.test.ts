import { appendFileSync } from "node:fs";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { createFakeAppTree, FAKE_METAMCP_API_KEY } from "../support/fake-app-tree.js";
import { useLocalStack } from "../support/local-rig.js";

/**
 * `local up --instances 2` and `local restart --rolling` through the real CLI (docs/scaling.md): two app
 * instances (two runtimes, each with its own MetaMCP) on one embedded PostgreSQL behind the stand-in Apps
 * proxy, which spreads one session's requests over both; a real MCP SDK client with no re-initialize logic
 * calls continuously while the instances are replaced one at a time.
 */
describe("local: several instances and a rolling restart", () => {
  const stack = useLocalStack("instances", { timeoutMs: 180_000 });
  const cli = (args: string[], timeoutMs = 180_000) => stack.cli(args, { timeoutMs });

  it("two instances behind the proxy; a rolling restart replaces both while a client calls: no call fails", async () => {
    const up = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(stack.port),
      "--instances",
      "2",
      "--routing",
      "spread",
    ]);
    expect(up.exitCode, up.stderr).toBe(0);
    const status = async () =>
      JSON.parse((await cli(["--json", "local", "status"])).stdout) as {
        instances?: { pid: number; port: number }[];
        alive: Record<string, boolean>;
      };
    const before = await status();
    expect(before.instances).toHaveLength(2);

    const token = (await cli(["local", "token"])).stdout.trim();
    const client = new Client({ name: "no-reinit-client", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(
      new URL(`http://127.0.0.1:${stack.port}/metamcp/demo/mcp`),
      {
        requestInit: { headers: { authorization: `Bearer ${token}`, "x-api-key": FAKE_METAMCP_API_KEY } },
      },
    );
    await client.connect(transport);
    const sessionId = transport.sessionId;
    const failures: string[] = [];
    let ok = 0;
    let running = true;
    const loop = (async () => {
      while (running) {
        try {
          const r = (await client.callTool({ name: "echo", arguments: { text: `call ${ok}` } })) as {
            content: { text: string }[];
          };
          expect(r.content[0]!.text).toBe(`call ${ok}`);
          ok++;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    try {
      await waitFor(() => (ok >= 10 ? true : undefined), { timeoutMs: 20_000, what: "calls before" });
      const restart = await cli(["--json", "local", "restart", "--rolling"], 300_000);
      expect(restart.exitCode, `${restart.stdout}\n${restart.stderr}`).toBe(0);
      const after = ok;
      await waitFor(() => (ok >= after + 10 ? true : undefined), { timeoutMs: 20_000, what: "calls after" });
    } finally {
      running = false;
      await loop;
    }
    expect(failures).toEqual([]);
    expect(transport.sessionId).toBe(sessionId);
    const replaced = await status();
    expect(replaced.instances).toHaveLength(2);
    for (let i = 0; i < 2; i++) expect(replaced.instances![i]!.pid).not.toBe(before.instances![i]!.pid);
    expect(replaced.instances!.map((i) => i.port)).toEqual(before.instances!.map((i) => i.port));
    await client.close();

    const down = await cli(["local", "down"]);
    expect(down.exitCode).toBe(0);
    for (const i of replaced.instances!)
      expect(() => process.kill(i.pid, 0), `instance pid ${i.pid} still runs`).toThrow();
  }, 400_000);

  it("--instances 2 on upstream's backend (port 12009 fixed in its code) is refused, saying why", async () => {
    const fixed = path.join(stack.work, "fixed-port-app");
    createFakeAppTree(fixed, { backendPort: stack.internal.backendPort });
    const entry = path.join(fixed, "metamcp/apps/backend/dist/index.js");
    // As upstream's built backend has it (v2.4.22 apps/backend/src/index.ts, after our backend-loopback patch).
    appendFileSync(entry, '\nif (false) app.listen(12009, "127.0.0.1", async () => {});\n');
    const r = await stack.cli(
      ["local", "up", "--no-build", "--port", String(stack.port), "--instances", "2"],
      {
        env: { APP_DIR: fixed, LOCAL_STATE_DIR: path.join(stack.work, "state-fixed") },
        timeoutMs: 60_000,
      },
    );
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/listens on port 12009, fixed in its code/);
  });

  it("--instances outside 1-5 is refused", async () => {
    const r = await cli(["local", "up", "--no-build", "--port", String(stack.port), "--instances", "6"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--instances must be a whole number from 1 to 5/);
  });
});
