import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { beforeAll, describe, expect, it } from "vitest";
import { localUserToken } from "../../src/local/user-token.js";
import { waitFor } from "../../src/retry.js";
import { useLocalStack } from "../support/local-rig.js";

/**
 * Issue 23's on-behalf-of test on `make local` (the fake tree) with user authorization on
 * (`--user-scopes genie,unity-catalog`): the stand-in Apps proxy forwards each person's own token, limited to
 * those scopes, in X-Forwarded-Access-Token; our router keeps it and gives MetaMCP a handle; the backend's fetch
 * wrapper sends the handle to the tools gateway, which calls the stand-in's Genie-like server with that
 * person's token. The stand-in filters rows per subject (Unity Catalog row filters): local-user@example.com sees
 * EMEA, bob@example.com AMER. So two people asking the same server through the same endpoint get different rows.
 */
const ADA = "local-user@example.com";
const BOB = "bob@example.com";

describe("on-behalf-of: two people, one per-person Genie server, different rows", () => {
  const stack = useLocalStack("tools-obo");
  const stateDir = () => stack.stateDir;
  const cli = (args: string[]) => stack.cli(args);

  beforeAll(async () => {
    await stack.up(["--genie-delay", "1", "--user-scopes", "genie,unity-catalog"]);
    // Bob signs in once, as a person does in the browser: the stand-in then knows him.
    await stack.signIn(BOB);
  }, 180_000);

  /** A person's real MCP SDK client on the `open` endpoint, through the stand-in Apps proxy. */
  async function clientOf(email: string) {
    const token = (await localUserToken(stateDir(), { email })).token;
    const client = new Client({ name: `obo-${email}`, version: "1.0.0" });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${stack.appUrl}/metamcp/open/mcp`), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    return client;
  }
  const text = (r: unknown) => (r as { content: { text: string }[] }).content[0]?.text ?? "";

  it("Ada and Bob ask the same server and each gets their own rows; Bob's function call names his missing grant", async () => {
    const r = await cli(["--json", "databricks-tools", "add", "genie", "local-sales", "--local"]);
    expect(r.exitCode, r.stderr).toBe(0);
    const genie = `${(JSON.parse(r.stdout) as { url: string }).url}#identity=user`;
    const f = await cli([
      "--json",
      "databricks-tools",
      "add",
      "functions",
      "main.tools.region_of",
      "--local",
    ]);
    expect(f.exitCode, f.stderr).toBe(0);
    const fn = `${(JSON.parse(f.stdout) as { url: string }).url}#identity=user`;
    const ada = await clientOf(ADA);
    const bob = await clientOf(BOB);
    const through = async (client: Client, url: string, tool: string, args: Record<string, unknown>) => {
      const res = await client.callTool({ name: "workspace_call", arguments: { url, tool, args } });
      return { isError: res.isError === true, text: text(res) };
    };
    const rowsOf = async (client: Client) => {
      const asked = await through(client, genie, "genie_ask", { question: "revenue by country" });
      expect(asked.isError, asked.text).toBe(false);
      const { conversation_id, response_id } = JSON.parse(asked.text) as Record<string, string>;
      const done = await waitFor(
        async () => {
          const p = await through(client, genie, "genie_poll_response", { conversation_id, response_id });
          expect(p.isError, p.text).toBe(false);
          const body = JSON.parse(p.text) as { status: string; rows: [string, string, number][] };
          return body.status === "COMPLETED" ? body : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 200, what: "Genie's answer" },
      );
      return done.rows;
    };
    try {
      const adaRows = await rowsOf(ada);
      const bobRows = await rowsOf(bob);
      expect(new Set(adaRows.map((x) => x[0]))).toEqual(new Set(["EMEA"]));
      expect(new Set(bobRows.map((x) => x[0]))).toEqual(new Set(["AMER"]));
      // Ada was granted EXECUTE (as the local manager); Bob was not: Unity Catalog refuses him by name.
      const adaFn = await through(ada, fn, "main__tools__region_of", { country: "JP" });
      expect(adaFn.isError, adaFn.text).toBe(false);
      expect(JSON.parse(adaFn.text)).toEqual({ result: "APJ" });
      const bobFn = await through(bob, fn, "main__tools__region_of", { country: "JP" });
      expect(bobFn.isError).toBe(true);
      expect(bobFn.text).toContain("EXECUTE");
      expect(bobFn.text).toContain(BOB);
    } finally {
      await ada.close();
      await bob.close();
    }
  }, 120_000);

  it("the person's token never reaches MetaMCP: its headers carry a handle, and no log line holds a forwarded token", async () => {
    const ada = await clientOf(ADA);
    try {
      const who = JSON.parse(text(await ada.callTool({ name: "whoami", arguments: {} }))) as Record<
        string,
        unknown
      >;
      expect(who["x-forwarded-access-token"]).toBeUndefined();
      expect(who["x-forwarded-email"]).toBe(ADA);
    } finally {
      await ada.close();
    }
    // The stand-in's OBO tokens are issued to the person with the user scopes; none may be in any log file.
    const logs: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir)) {
        const p = path.join(dir, e);
        if (statSync(p).isDirectory()) walk(p);
        else if (/\.log$|log/.test(e)) logs.push(readFileSync(p, "utf8"));
      }
    };
    walk(stateDir());
    const all = logs.join("\n");
    expect(all.length).toBeGreaterThan(0);
    expect(all).toMatch(/databricks-tools: POST genie local-sales .* as local-user@example\.com/);
    expect(all).toMatch(/as bob@example\.com/);
    expect(all).not.toMatch(/x-forwarded-access-token:/i);
  });
});
