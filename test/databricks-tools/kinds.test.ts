import { describe, expect, it } from "vitest";
import { grantStatements } from "../../src/databricks-tools/grants.js";
import {
  classifyToolUrl,
  defaultServerName,
  identityOfUrl,
  parseToolServer,
  toolServerUrl,
  workspaceOrigin,
} from "../../src/databricks-tools/kinds.js";

const HOST = "https://adb-123.4.azuredatabricks.net";
const SP = "6f1d0c2e-0000-4000-8000-00000000abcd";

describe("managed server kinds", () => {
  it("builds each kind's path on the workspace host (design §1.1)", () => {
    const cases: [string, string | undefined, string][] = [
      ["genie", "01ef0123456789abcdef0123456789ab", "/api/2.0/mcp/genie/01ef0123456789abcdef0123456789ab"],
      ["genie-one", undefined, "/api/2.0/mcp/genie"],
      ["sql", undefined, "/api/2.0/mcp/sql"],
      ["functions", "main.tools", "/api/2.0/mcp/functions/main/tools"],
      ["functions", "main.tools.region_of", "/api/2.0/mcp/functions/main/tools/region_of"],
      ["search", "main.docs.chunks_index", "/api/2.0/mcp/vector-search/main/docs/chunks_index"],
      ["connection", "github-mcp", "/api/2.0/mcp/external/github-mcp"],
    ];
    for (const [kind, ids, path] of cases) {
      const server = parseToolServer(kind, ids);
      expect(server.path).toBe(path);
      expect(toolServerUrl(HOST, server)).toBe(`${HOST}${path}`);
      // Read back from MetaMCP's row: the same kind and ids (a fragment does not change the server).
      expect(classifyToolUrl(`${HOST}${path}#identity=user`, HOST)).toMatchObject({
        kind: server.kind,
        ids: server.ids,
      });
    }
  });

  it("reads who calls a server from its URL's fragment (#identity=user: each person; none: the app)", () => {
    expect(identityOfUrl(`${HOST}/api/2.0/mcp/sql`)).toBe("app");
    expect(identityOfUrl(`${HOST}/api/2.0/mcp/sql#identity=user`)).toBe("user");
    expect(identityOfUrl(`${HOST}/api/2.0/mcp/sql#x=1&identity=user`)).toBe("user");
    expect(identityOfUrl(`${HOST}/api/2.0/mcp/sql?identity=user`)).toBe("app");
  });

  it("takes the host as profiles and DATABRICKS_HOST give it: with or without scheme, with a trailing slash", () => {
    expect(workspaceOrigin("adb-123.4.azuredatabricks.net")).toBe(HOST);
    expect(workspaceOrigin(`${HOST}/`)).toBe(HOST);
    expect(workspaceOrigin("http://127.0.0.1:41234")).toBe("http://127.0.0.1:41234");
  });

  it("does not take another host's or another path's server for a managed one", () => {
    expect(classifyToolUrl("https://evil.example/api/2.0/mcp/genie/x", HOST)).toBeUndefined();
    expect(classifyToolUrl(`${HOST}/api/2.0/secrets/list`, HOST)).toBeUndefined();
    expect(classifyToolUrl(`${HOST}/api/2.0/mcp`, HOST)).toBeUndefined();
    expect(classifyToolUrl(null, HOST)).toBeUndefined();
    expect(classifyToolUrl("not a url", HOST)).toBeUndefined();
  });

  it("names servers as MetaMCP allows (letters, digits, _ and -, never __)", () => {
    expect(defaultServerName(parseToolServer("functions", "main.tools"))).toBe(
      "databricks-functions-main-tools",
    );
    expect(defaultServerName(parseToolServer("functions", "main.my__schema"))).toBe(
      "databricks-functions-main-my_schema",
    );
    expect(defaultServerName(parseToolServer("genie-one", undefined))).toBe("databricks-genie-one");
  });

  it("prints the grants each kind needs, naming the service principal by its application id (design §1.2)", () => {
    const g = (kind: string, ids?: string) => grantStatements(parseToolServer(kind, ids), SP);
    expect(g("functions", "main.tools.region_of")).toEqual([
      `GRANT USE CATALOG ON CATALOG \`main\` TO \`${SP}\`;`,
      `GRANT USE SCHEMA ON SCHEMA \`main\`.\`tools\` TO \`${SP}\`;`,
      `GRANT EXECUTE ON FUNCTION \`main\`.\`tools\`.\`region_of\` TO \`${SP}\`;`,
    ]);
    expect(g("search", "main.docs.idx").at(-1)).toBe(
      `GRANT SELECT ON TABLE \`main\`.\`docs\`.\`idx\` TO \`${SP}\`;`,
    );
    expect(g("connection", "github")).toEqual([
      `GRANT USE CONNECTION ON CONNECTION \`github\` TO \`${SP}\`;`,
    ]);
    expect(g("genie", "abc")[0]).toBe(`-- Genie space abc: CAN VIEW for ${SP} (the space's Share dialog)`);
    expect(g("sql").join("\n")).toMatch(/CAN USE on the SQL warehouse/);
  });
});
