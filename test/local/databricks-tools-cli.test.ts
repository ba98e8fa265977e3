import { readFileSync } from "node:fs";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { beforeAll, describe, expect, it } from "vitest";
import { localPaths, readRunState } from "../../src/local/state.js";
import { waitFor } from "../../src/retry.js";
import { useLocalStack } from "../support/local-rig.js";

/**
 * `databricks-tools` against the local stack (docs/databricks-tools-cli.md): the real CLI binary creates managed-
 * server entries in the fake tree's MetaMCP tRPC through the stand-in Apps proxy and our router, as the person
 * whose token it carries; the URL it builds is the stand-in workspace's, which serves it.
 */
const BOB = "bob@example.com";

interface Entry {
  uuid: string;
  name: string;
  kind: string;
  ids: string[];
  url: string;
  public: boolean;
  principal?: string;
  grants?: string[];
}

describe("databricks-tools on the local stack", () => {
  const stack = useLocalStack("tools");
  let workspaceUrl: string;
  let secrets: { clientId: string; clientSecret: string };
  const stateDir = () => stack.stateDir;
  const cli = (args: string[]) => stack.cli(args);
  const tools = async (args: string[]) => {
    const r = await cli(["--json", "databricks-tools", ...args, "--local"]);
    return { ...r, json: () => JSON.parse(r.stdout) as unknown };
  };
  /** The app's service-principal token, as the runtime gets it (client_credentials at the stand-in). */
  const appToken = async () => {
    const res = await fetch(`${workspaceUrl}/oidc/v1/token`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${secrets.clientId}:${secrets.clientSecret}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams({ grant_type: "client_credentials", scope: "all-apis" }),
    });
    return ((await res.json()) as { access_token: string }).access_token;
  };

  beforeAll(async () => {
    await stack.up(["--genie-delay", "1"]);
    // Bob signs in at the stand-in's login page once, as a person would: then he is a workspace user.
    await stack.signIn(BOB, "Bob");
    const paths = localPaths(stateDir());
    workspaceUrl = readRunState(paths)!.workspaceUrl;
    secrets = JSON.parse(readFileSync(paths.secretsFile, "utf8")) as typeof secrets;
  }, 180_000);

  it("add functions main.tools --local creates the person's private server on the stand-in's URL, with the grants", async () => {
    const add = await tools(["add", "functions", "main.tools"]);
    expect(add.exitCode, add.stderr).toBe(0);
    const created = add.json() as Entry;
    expect(created).toMatchObject({
      name: "databricks-functions-main-tools",
      kind: "functions",
      ids: ["main", "tools"],
      url: `${workspaceUrl}/api/2.0/mcp/functions/main/tools`,
      public: false,
      principal: secrets.clientId,
    });
    expect(created.grants).toEqual([
      `GRANT USE CATALOG ON CATALOG \`main\` TO \`${secrets.clientId}\`;`,
      `GRANT USE SCHEMA ON SCHEMA \`main\`.\`tools\` TO \`${secrets.clientId}\`;`,
      `GRANT EXECUTE ON SCHEMA \`main\`.\`tools\` TO \`${secrets.clientId}\`;`,
    ]);
    const list = await tools(["list"]);
    expect(list.exitCode, list.stderr).toBe(0);
    expect(list.json()).toEqual([
      {
        uuid: created.uuid,
        name: created.name,
        kind: "functions",
        ids: ["main", "tools"],
        url: created.url,
        public: false,
        identity: "app",
      },
    ]);
    // The URL it built is the one the stand-in workspace serves, to the app's service principal.
    const client = new Client({ name: "tools-cli-test", version: "1.0.0" });
    const token = await appToken();
    await client.connect(
      new StreamableHTTPClientTransport(new URL(created.url), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    try {
      const r = await client.callTool({ name: "main__tools__region_of", arguments: { country: "US" } });
      expect((r as { content: { text: string }[] }).content[0]!.text).toBe('{"result":"AMER"}');
    } finally {
      await client.close();
    }
  });

  it("another person does not see a private one, but sees a public one", async () => {
    const add = await tools(["add", "genie", "local-sales", "--public", "--name", "sales-genie"]);
    expect(add.exitCode, add.stderr).toBe(0);
    expect(add.json()).toMatchObject({
      name: "sales-genie",
      kind: "genie",
      ids: ["local-sales"],
      public: true,
    });
    const bobs = await tools(["list", "--user", BOB]);
    expect(bobs.exitCode, bobs.stderr).toBe(0);
    expect((bobs.json() as Entry[]).map((e) => e.name)).toEqual(["sales-genie"]);
    const human = await cli(["databricks-tools", "list", "--local", "--user", BOB]);
    expect(human.exitCode, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/^sales-genie\tgenie local-sales\tas the app\tpublic\t[0-9a-f-]{36}\n$/);
    const mine = await tools(["list"]);
    expect((mine.json() as Entry[]).map((e) => e.name).sort()).toEqual([
      "databricks-functions-main-tools",
      "sales-genie",
    ]);
  });

  it("the same name twice: exit 2, saying to pick another with --name", async () => {
    const again = await cli(["databricks-tools", "add", "functions", "main.tools", "--local"]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/already has a server named databricks-functions-main-tools of yours/);
    expect(again.stderr).toMatch(/--name/);
  });

  it("bad input: exit 2 with a sentence, before anything is asked of the app", async () => {
    const cases: [string[], RegExp][] = [
      [["add", "genie", "no such!"], /"no such!" is not a Genie space id/],
      [["add", "genie"], /genie needs the Genie space's id/],
      [
        ["add", "notebooks", "x"],
        /unknown kind of Databricks server "notebooks": expected one of genie, genie-one/,
      ],
      [
        ["add", "functions", "main"],
        /"main" is not a Unity Catalog name of the form <catalog>\.<schema>\[\.<function>\]/,
      ],
      [["add", "sql", "extra"], /sql takes no ids/],
      [["add", "functions", "main.tools", "--name", "a__b"], /"a__b" is not a MetaMCP server name/],
      [["grants", "connection", "a.b"], /"a\.b" is not a Unity Catalog name/],
    ];
    for (const [args, message] of cases) {
      const r = await cli([
        "databricks-tools",
        ...args,
        "--local",
        "--state-dir",
        path.join(stack.work, "nowhere"),
      ]);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });

  it("not running: says how to start it (exit 5)", async () => {
    const r = await cli([
      "databricks-tools",
      "list",
      "--local",
      "--state-dir",
      path.join(stack.work, "nowhere"),
    ]);
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toMatch(/the local app is not running/);
  });

  it("grants prints the statements for the app's service principal", async () => {
    const r = await cli(["databricks-tools", "grants", "functions", "main.tools.region_of", "--local"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual([
      `GRANT USE CATALOG ON CATALOG \`main\` TO \`${secrets.clientId}\`;`,
      `GRANT USE SCHEMA ON SCHEMA \`main\`.\`tools\` TO \`${secrets.clientId}\`;`,
      `GRANT EXECUTE ON FUNCTION \`main\`.\`tools\`.\`region_of\` TO \`${secrets.clientId}\`;`,
    ]);
  });

  it("local up --genie-delay reaches the stand-in: a Genie answer is IN_PROGRESS, then COMPLETED", async () => {
    const client = new Client({ name: "tools-cli-genie", version: "1.0.0" });
    const token = await appToken();
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${workspaceUrl}/api/2.0/mcp/genie/local-sales`), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    try {
      const text = (r: unknown) => JSON.parse((r as { content: { text: string }[] }).content[0]!.text);
      const asked = text(await client.callTool({ name: "genie_ask", arguments: { question: "revenue" } }));
      const started = Date.now();
      const states: string[] = [];
      const done = await waitFor(
        async () => {
          const r = text(await client.callTool({ name: "genie_poll_response", arguments: asked }));
          states.push(r.status);
          return r.status === "COMPLETED" ? r : undefined;
        },
        { timeoutMs: 10_000, intervalMs: 100, what: "the Genie answer" },
      );
      expect(states[0]).toBe("IN_PROGRESS");
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      // The app's service principal sees every region.
      expect(new Set((done.rows as string[][]).map((row) => row[0]))).toEqual(
        new Set(["EMEA", "AMER", "APJ"]),
      );
    } finally {
      await client.close();
    }
  });
  it("local up --managed-mcp off (detached, as `make local ARGS=…` runs it): the workspace does not offer them", async () => {
    expect((await cli(["local", "down"])).exitCode).toBe(0);
    const up = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(stack.port),
      "--managed-mcp",
      "off",
    ]);
    expect(up.exitCode, up.stderr).toBe(0);
    workspaceUrl = readRunState(localPaths(stateDir()))!.workspaceUrl;
    const res = await fetch(`${workspaceUrl}/api/2.0/mcp/functions/main/tools`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await appToken()}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-03-26", capabilities: {}, clientInfo: { name: "t", version: "1" } },
      }),
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error_code: string }).error_code).toBe("FEATURE_DISABLED");
  });
});
