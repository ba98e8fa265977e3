import { describe, expect, it } from "vitest";
import { canonicalMcpPath, classifyMcpPath } from "../../src/runtime/databricks-tools/paths.js";

/**
 * The only paths the tools gateway lets through to the workspace (docs/databricks-tools-design.md §4, §6):
 * `/api/2.0/mcp/<kind>/…` spelled exactly, one way. Every other spelling is refused before the workspace
 * sees it, because the gateway attaches the service principal's token to what it forwards.
 */
describe("canonicalMcpPath: only /api/2.0/mcp/** spelled one way", () => {
  const accepted: [string, string, string[]][] = [
    ["/api/2.0/mcp/genie", "genie", []],
    ["/api/2.0/mcp/genie/01ef-space_ID", "genie", ["01ef-space_ID"]],
    ["/api/2.0/mcp/sql", "sql", []],
    ["/api/2.0/mcp/functions/main/tools", "functions", ["main", "tools"]],
    ["/api/2.0/mcp/functions/system/ai", "functions", ["system", "ai"]],
    ["/api/2.0/mcp/functions/main/tools/region_of", "functions", ["main", "tools", "region_of"]],
    ["/api/2.0/mcp/functions/my-cat/my_schema", "functions", ["my-cat", "my_schema"]],
    ["/api/2.0/mcp/vector-search/main/docs", "vector-search", ["main", "docs"]],
    ["/api/2.0/mcp/vector-search/main/docs/idx-1", "vector-search", ["main", "docs", "idx-1"]],
    ["/api/2.0/mcp/external/github-conn", "external", ["github-conn"]],
  ];
  for (const [raw, kind, ids] of accepted)
    it(`accepts ${raw} as ${kind}`, () => {
      const r = canonicalMcpPath(raw);
      expect(r).toEqual({ ok: true, path: raw, kind, ids });
      expect(classifyMcpPath(raw)).toEqual({ kind, ids });
    });

  const refused: [string, RegExp][] = [
    ["/api/2.0/mcp/../2.0/secrets/list", /\.\./],
    ["/api/2.0/mcp/genie/../../secrets/list", /\.\./],
    ["/api/2.0/mcp/genie/./x", /"\."/],
    ["/api/2.0/mcp/%2e%2e/2.0/secrets/list", /percent/],
    ["/api/2.0/mcp/%2E%2E/secrets", /percent/],
    ["/api/2.0/mcp/genie%2F..%2F..%2Fsecrets", /percent/],
    ["/api/2.0/mcp/genie%2fspace", /percent/],
    ["/api/2.0/mcp//genie", /empty/],
    ["//api/2.0/mcp/genie", /empty|only/],
    ["/api/2.0/mcp/genie/", /empty/],
    ["/api/2.0/mcp\\..\\secrets", /backslash/],
    ["/api/2.0/mcp/genie\\..\\..\\secrets", /backslash/],
    ["/API/2.0/mcp/genie", /only/],
    ["/api/2.0/MCP/genie", /only/],
    ["/api/2.0/mcp", /kind/],
    ["/api/2.0/mcpx/genie", /only/],
    ["/api/2.0/secrets/list", /only/],
    ["/api/2.1/mcp/genie", /only/],
    ["/ai-gateway/mcp-services/system.ai.dbsql", /only/],
    ["/api/2.0/mcp/GENIE", /kind/],
    ["/api/2.0/mcp/unknown-kind/x", /kind/],
    ["/api/2.0/mcp/sql/extra", /sql/],
    ["/api/2.0/mcp/genie/a/b", /genie/],
    ["/api/2.0/mcp/functions/main", /functions/],
    ["/api/2.0/mcp/functions/a/b/c/d", /functions/],
    ["/api/2.0/mcp/external", /external/],
    ["/api/2.0/mcp/genie/sp ace", /character/],
    ["/api/2.0/mcp/genie/a;b", /character/],
    ["/api/2.0/mcp/genie?x=1", /query/],
    ["/api/2.0/mcp/genie#identity=user", /character/],
    ["api/2.0/mcp/genie", /only/],
    ["https://evil.example/api/2.0/mcp/genie", /only/],
    ["/api/2.0/mcp/genie\u0000", /character/],
    ["/api/2.0/mcp/genie/\u2025", /character/],
  ];
  for (const [raw, why] of refused)
    it(`refuses ${JSON.stringify(raw)}`, () => {
      const r = canonicalMcpPath(raw);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(why);
      expect(classifyMcpPath(raw)).toBeUndefined();
    });
});
