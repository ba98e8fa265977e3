import { chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintingTokens } from "../../src/connect/token-source.js";
import { freePort } from "../../src/local/postgres.js";
import { localUserToken } from "../../src/local/user-token.js";
import { waitFor } from "../../src/retry.js";
import { PROJECT_ROOT, runCli } from "../support/cli.js";
import { createFakeAppTree, freeInternalPorts, type InternalPorts } from "../support/fake-app-tree.js";

/**
 * Issue 23 end to end on `make local` (the fake tree): `databricks-tools add` creates the servers, then a real MCP
 * SDK client calls them through the local Apps proxy, our router and a MetaMCP endpoint. The fake MetaMCP calls a
 * server's URL the way MetaMCP's client does (its `workspace_call` tool), so the call leaves through the backend's
 * fetch wrapper, the runtime's tools gateway (the app's service-principal token) and reaches the stand-in
 * workspace's managed servers. Tokens last 8 s (`--token-ttl`): the calls run across several lifetimes, of the
 * person's token and of the app's, and none may fail.
 * Needs the tools gateway (src/runtime/databricks-tools/, the tools-gw branch); skipped without it.
 */
const GATEWAY = existsSync(path.join(PROJECT_ROOT, "src/runtime/databricks-tools/gateway.ts"));
const TOKEN_TTL_S = 8;

describe.skipIf(!GATEWAY)("Databricks tools through a MetaMCP endpoint on the local stack", () => {
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

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "mmdb-tools-e2e-"));
    chmodSync(work, 0o755);
    internal = await freeInternalPorts();
    createFakeAppTree(path.join(work, "app"), { backendPort: internal.backendPort });
    const port = await freePort();
    const up = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(port),
      "--token-ttl",
      String(TOKEN_TTL_S),
      "--genie-delay",
      "1",
    ]);
    expect(up.exitCode, up.stderr).toBe(0);
    appUrl = (JSON.parse(up.stdout) as { appUrl: string }).appUrl;
  }, 180_000);

  afterAll(async () => {
    if (work) {
      await cli(["local", "down"]);
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("a Genie-like and a function-like server beside an ordinary tool, across token expiries: 0 failed calls", async () => {
    const added = async (args: string[]) => {
      const r = await cli(["--json", "databricks-tools", "add", ...args, "--local"]);
      expect(r.exitCode, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { url: string }).url;
    };
    const functionsUrl = await added(["functions", "main.tools"]);
    const genieUrl = await added(["genie", "local-sales"]);

    // The person's client renews its own token ahead of expiry, as `connect`'s bridge does.
    const tokens = mintingTokens("test", async () => {
      const t = await localUserToken(stateDir());
      return { token: t.token, expiresAt: t.expiresAt.getTime() };
    });
    const client = new Client({ name: "tools-e2e", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${appUrl}/metamcp/open/mcp`), {
        fetch: async (url, init) => {
          const headers = new Headers(init?.headers);
          headers.set("authorization", `Bearer ${await tokens.token()}`);
          return await fetch(url, { ...init, headers, redirect: "manual" });
        },
      }),
    );
    const text = (r: unknown) => (r as { content: { text: string }[] }).content[0]?.text ?? "";
    const through = async (url: string, tool: string, args: Record<string, unknown>) => {
      const r = await client.callTool({ name: "workspace_call", arguments: { url, tool, args } });
      if (r.isError) throw new Error(`${tool} failed: ${text(r)}`);
      return JSON.parse(text(r)) as Record<string, unknown>;
    };
    try {
      // The runtime's first service-principal token may still be on its way.
      await waitFor(
        async () => {
          const r = await client.callTool({
            name: "workspace_call",
            arguments: { url: functionsUrl, tool: "main__tools__region_of", args: { country: "DE" } },
          });
          return r.isError ? undefined : true;
        },
        { timeoutMs: 20_000, what: "the first call through the tools gateway" },
      );
      const failures: string[] = [];
      let calls = 0;
      const until = Date.now() + 3 * TOKEN_TTL_S * 1000 + 2000;
      while (Date.now() < until) {
        try {
          expect(await through(functionsUrl, "main__tools__region_of", { country: "JP" })).toEqual({
            result: "APJ",
          });
          const asked = await through(genieUrl, "genie_ask", { question: "revenue by country" });
          expect(asked.status).toBe("IN_PROGRESS");
          const done = await waitFor(
            async () => {
              const r = await through(genieUrl, "genie_poll_response", {
                conversation_id: asked.conversation_id,
                response_id: asked.response_id,
              });
              return r.status === "COMPLETED" ? r : undefined;
            },
            { timeoutMs: 10_000, intervalMs: 250, what: "Genie's answer" },
          );
          // The app's service principal sees every region.
          expect((done.rows as unknown[]).length).toBe(8);
          expect(text(await client.callTool({ name: "echo", arguments: { text: "beside" } }))).toBe("beside");
          calls += 4;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      expect(failures).toEqual([]);
      expect(calls).toBeGreaterThan(12);
    } finally {
      await client.close();
    }
  }, 120_000);
  it("Unity Catalog's refusal reaches the agent as the tool's error naming the grant; a path outside /api/2.0/mcp is refused", async () => {
    const r = await cli(["--json", "databricks-tools", "add", "functions", "main.finance", "--local"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const financeUrl = (JSON.parse(r.stdout) as { url: string }).url;
    const token = (await localUserToken(stateDir())).token;
    const client = new Client({ name: "tools-e2e-refusals", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${appUrl}/metamcp/open/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    const call = async (url: string, tool: string) => {
      const res = await client.callTool({
        name: "workspace_call",
        arguments: { url, tool, args: { product: "x" } },
      });
      return { isError: res.isError === true, text: (res.content as { text: string }[])[0]?.text ?? "" };
    };
    try {
      const denied = await call(financeUrl, "main__finance__margin_of");
      expect(denied.isError).toBe(true);
      // The stand-in's Unity Catalog words, and the grant to ask for (the gateway's sentence).
      expect(denied.text).toContain(
        "User does not have EXECUTE on Routine or Model 'main.finance.margin_of'.",
      );
      expect(denied.text).toMatch(/GRANT EXECUTE ON SCHEMA main\.finance TO `[0-9a-f-]{36}`/);
      const outside = await call(`${new URL(financeUrl).origin}/api/2.0/secrets/list`, "x");
      expect(outside.isError).toBe(true);
      expect(outside.text).toMatch(/only \/api\/2\.0\/mcp\//);
    } finally {
      await client.close();
    }
  });

  it("a per-person server (#identity=user) on an app without user authorization is refused, never served as the app", async () => {
    const r = await cli([
      "--json",
      "databricks-tools",
      "add",
      "genie",
      "local-sales",
      "--name",
      "genie-per-person",
      "--local",
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const perPerson = `${(JSON.parse(r.stdout) as { url: string }).url}#identity=user`;
    const token = (await localUserToken(stateDir())).token;
    const client = new Client({ name: "tools-e2e-no-obo", version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${appUrl}/metamcp/open/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    try {
      const res = await client.callTool({
        name: "workspace_call",
        arguments: { url: perPerson, tool: "genie_ask", args: { question: "q" } },
      });
      expect(res.isError).toBe(true);
      expect((res.content as { text: string }[])[0]?.text).toMatch(/none came with this request/);
    } finally {
      await client.close();
    }
  });
});
