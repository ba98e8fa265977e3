import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditRecord } from "../../src/audit/query.js";
import { freePort } from "../../src/local/postgres.js";
import { localUserToken } from "../../src/local/user-token.js";
import { waitFor } from "../../src/retry.js";
import { runCli } from "../support/cli.js";
import {
  createFakeAppTree,
  FAKE_METAMCP_API_KEY,
  freeInternalPorts,
  type InternalPorts,
} from "../support/fake-app-tree.js";

/**
 * `audit --local` end to end: `local up` of the fake tree (the runtime bundle, its router with the audit on,
 * embedded PostgreSQL as Lakebase), a real MCP SDK client through the local Apps proxy, then the built CLI
 * reading the rows back.
 */
const PERSON = "local-user@example.com"; // the stand-in's default user

describe("audit --local reads the tool calls of the running local app", () => {
  let work: string;
  let internal: InternalPorts | undefined;
  let appUrl: string;
  const stateDir = () => path.join(work, "state");
  const cli = (args: string[]) =>
    runCli(args, {
      cwd: work,
      env: { APP_DIR: path.join(work, "app"), LOCAL_STATE_DIR: stateDir(), ...internal?.env },
      timeoutMs: 120_000,
    });
  const audit = async (...args: string[]) => {
    const r = await cli(["--json", "audit", "--local", ...args]);
    expect(r.exitCode, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { rows: AuditRecord[] }).rows;
  };

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "mmdb-audit-"));
    chmodSync(work, 0o755);
    internal = await freeInternalPorts();
    createFakeAppTree(path.join(work, "app"), { backendPort: internal.backendPort });
    const up = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(await freePort()),
    ]);
    expect(up.exitCode, up.stderr).toBe(0);
    appUrl = (JSON.parse(up.stdout) as { appUrl: string }).appUrl;
  }, 180_000);
  afterAll(async () => {
    if (work) {
      await cli(["local", "down"]);
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);

  it("a call through the Apps proxy is a row with the person's email; filters narrow; no key in it", async () => {
    const before = await cli(["--json", "audit", "--local"]);
    // The table exists from the start (made with the migrations), before any call.
    expect(before.exitCode, before.stderr).toBe(0);
    const { token } = await localUserToken(stateDir());
    const client = new Client({ name: "audit-cli-test", version: "1.2.3" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${appUrl}/metamcp/demo/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${token}`, "x-api-key": FAKE_METAMCP_API_KEY } },
      }),
    );
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name);
      const echo = tools.find((t) => t === "echo" || t.endsWith("__echo"))!;
      await client.callTool({ name: echo, arguments: { text: "on the record" } });
    } finally {
      await client.close();
    }
    // Written within about a second (batches), read back by the CLI.
    const rows = await waitFor(
      async () => {
        const rs = await audit("--tool", "echo");
        return rs.length > 0 ? rs : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 300, what: "the echo call in `audit --local`" },
    );
    expect(rows[0]).toMatchObject({
      principal: PERSON,
      endpoint: "demo",
      method: "tools/call",
      outcome: "ok",
      client: "audit-cli-test/1.2.3",
      arguments: null,
    });
    const all = await audit("--since", "1h", "--user", PERSON.toUpperCase());
    expect(all.map((r) => r.method)).toEqual(
      expect.arrayContaining(["initialize", "tools/list", "tools/call"]),
    );
    expect(await audit("--user", "nobody@example.com")).toEqual([]);
    expect(await audit("--endpoint", "other")).toEqual([]);
    expect(await audit("--limit", "1")).toHaveLength(1);
    const text = JSON.stringify(all);
    expect(text).not.toContain(FAKE_METAMCP_API_KEY);
    expect(text).not.toContain(token);

    const human = await cli(["audit", "--local", "--tool", "echo"]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(/local-user@example\.com\s+demo\s+\S*echo\s+ok/);
  }, 60_000);

  it("bad input exits 2 saying what to give; no --local says where to read", async () => {
    const since = await cli(["audit", "--local", "--since", "yesterday-ish"]);
    expect(since.exitCode).toBe(2);
    expect(since.stderr).toContain("--since");
    const limit = await cli(["audit", "--local", "--limit", "0"]);
    expect(limit.exitCode).toBe(2);
    const where = await cli(["audit"]);
    expect(where.exitCode).toBe(2);
    expect(where.stderr).toMatch(/--local/);
    expect(where.stderr).toMatch(/docs\/audit\.md/);
  });
});
