import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { describe, expect, it } from "vitest";
import { FRONTEND_BACKEND_PORT_PATCH_ID, ORIGIN_FORM_NOTE } from "../../src/patches/instance-ports.js";
import { waitFor } from "../../src/retry.js";
import { createFakeAppTree, FAKE_METAMCP_API_KEY } from "../support/fake-app-tree.js";
import { useLocalStack } from "../support/local-rig.js";

/**
 * `local up --instances 2` and `local restart --rolling` through the real CLI (docs/scaling.md): two app
 * instances (two runtimes, each with its own MetaMCP) on one embedded PostgreSQL behind the stand-in Apps
 * proxy, which spreads one session's requests over both; a real MCP SDK client with no re-initialize logic
 * calls continuously while the instances are replaced one at a time.
 */
/** A process's parent, from /proc (Linux, where these tests run). */
const parentOf = (pid: number) =>
  Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[1]);

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
    // Each instance's MetaMCP on ports of its own: its frontend asks its own backend (as the patched
    // middleware does on a real tree), which is a child of that instance's runtime.
    const backendPorts: number[] = [];
    for (const inst of before.instances!) {
      const page = await (await fetch(`http://127.0.0.1:${inst.port}/en/`)).text();
      const backendPort = Number(/<p id='backend-port'>(\d+)<\/p>/.exec(page)?.[1]);
      backendPorts.push(backendPort);
      const pid = (await (await fetch(`http://127.0.0.1:${backendPort}/metamcp/pid`)).json()) as {
        pid: number;
      };
      expect(parentOf(pid.pid), `the backend at ${backendPort}`).toBe(inst.pid);
    }
    expect(backendPorts[0]).toBe(stack.internal.backendPort);
    expect(backendPorts[1]).not.toBe(stack.internal.backendPort);

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

  it("--instances 2 on a tree prepared before the port patches (backend on 12009, fixed) is refused, saying why", async () => {
    const fixed = path.join(stack.work, "fixed-port-app");
    createFakeAppTree(fixed, { backendPort: stack.internal.backendPort });
    const entry = path.join(fixed, "metamcp/apps/backend/dist/index.js");
    // As upstream's built backend had it after our backend-loopback patch gave it a host but not yet a port.
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
    expect(r.stderr).toMatch(/prepare and build again/);
  });

  it("--instances 2 on a release whose frontend asks the backend through Next's rewrites (v2.0.0–v2.0.5) is refused", async () => {
    const old = path.join(stack.work, "origin-form-app");
    createFakeAppTree(old, { backendPort: stack.internal.backendPort });
    mkdirSync(path.join(old, ".metamcp-databricks"));
    writeFileSync(
      path.join(old, ".metamcp-databricks/manifest.json"),
      JSON.stringify({
        patches: [{ id: FRONTEND_BACKEND_PORT_PATCH_ID, files: [], note: ORIGIN_FORM_NOTE }],
      }),
    );
    const r = await stack.cli(
      ["local", "up", "--no-build", "--port", String(stack.port), "--instances", "2"],
      {
        env: { APP_DIR: old, LOCAL_STATE_DIR: path.join(stack.work, "state-origin") },
        timeoutMs: 60_000,
      },
    );
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/checks sessions through Next's rewrites/);
  });

  it("--instances outside 1-5 is refused", async () => {
    const r = await cli(["local", "up", "--no-build", "--port", String(stack.port), "--instances", "6"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--instances must be a whole number from 1 to 5/);
  });
});
