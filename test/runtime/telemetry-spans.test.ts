import { afterEach, describe, expect, it } from "vitest";
import { clearSecrets, registerSecret } from "../../src/log/secrets.js";
import type { AuditRow } from "../../src/runtime/audit-rows.js";
import { spanOfRow } from "../../src/runtime/telemetry-spans.js";

/** An audit row as a span, by the MCP semantic conventions (semantic-conventions-genai model/mcp). */

const row = (over: Partial<AuditRow>): AuditRow => ({
  calledAt: new Date("2026-12-07T10:00:00.000Z"),
  principal: "ada@example.com",
  endpoint: "adas",
  namespace: null,
  server: null,
  tool: null,
  method: "tools/list",
  durationMs: 12.5,
  outcome: "ok",
  error: null,
  client: "agent/1.0",
  session: "AbCdEfGhIjKlMnOp",
  requestBytes: 80,
  responseBytes: 120,
  arguments: null,
  ...over,
});

afterEach(() => clearSecrets());

describe("spanOfRow", () => {
  it("a tool call: `{mcp.method.name} {gen_ai.tool.name}`, execute_tool, the row's times", () => {
    const s = spanOfRow(row({ method: "tools/call", server: "github", tool: "search" }), {
      principal: false,
    });
    expect(s.name).toBe("tools/call github__search");
    expect(s.attributes).toMatchObject({
      "mcp.method.name": "tools/call",
      "gen_ai.tool.name": "github__search",
      "gen_ai.operation.name": "execute_tool",
      "mcp.session.id": "AbCdEfGhIjKlMnOp",
      "network.transport": "tcp",
      "metamcp.server": "github",
    });
    expect(s.startTimeMs).toBe(Date.parse("2026-12-07T10:00:00.000Z"));
    expect(s.endTimeMs - s.startTimeMs).toBe(12.5);
    expect(s.error).toBeUndefined();
    expect(s.attributes["enduser.id"]).toBeUndefined();
  });

  it("other methods: the method alone; gen_ai.operation.name only on tool calls", () => {
    expect(spanOfRow(row({ method: "initialize" }), { principal: false }).name).toBe("initialize");
    const p = spanOfRow(row({ method: "prompts/get", server: "s", tool: "greet" }), { principal: false });
    expect(p.name).toBe("prompts/get s__greet");
    expect(p.attributes["gen_ai.prompt.name"]).toBe("s__greet");
    expect(p.attributes["gen_ai.operation.name"]).toBeUndefined();
  });

  it("resources/read: the URI is an attribute, never the span name (high cardinality)", () => {
    const s = spanOfRow(row({ method: "resources/read", tool: "file:///a/b.txt" }), { principal: false });
    expect(s.name).toBe("resources/read");
    expect(s.attributes["mcp.resource.uri"]).toBe("file:///a/b.txt");
  });

  it("error.type and status per outcome; a tool's error text is not sent", () => {
    const tool = spanOfRow(
      row({ method: "tools/call", tool: "x", outcome: "tool_error", error: "disk full at /home/ada" }),
      {
        principal: false,
      },
    );
    expect(tool.attributes["error.type"]).toBe("tool_error");
    expect(tool.error).toEqual({});
    expect(JSON.stringify(tool)).not.toContain("disk full");

    const internal = spanOfRow(row({ outcome: "protocol_error", error: "Internal error (-32603)" }), {
      principal: false,
    });
    expect(internal.attributes).toMatchObject({
      "error.type": "-32603",
      "rpc.response.status_code": "-32603",
    });
    expect(internal.error).toEqual({ message: "Internal error (-32603)" });

    // The caller's mistake (unknown tool, bad params) is not the server's error (the conventions' list).
    const params = spanOfRow(row({ outcome: "protocol_error", error: "Invalid params (-32602)" }), {
      principal: false,
    });
    expect(params.error).toBeUndefined();
    expect(params.attributes["error.type"]).toBeUndefined();
    expect(params.attributes["rpc.response.status_code"]).toBe("-32602");

    const http = spanOfRow(row({ outcome: "protocol_error", error: "HTTP 502" }), { principal: false });
    expect(http.attributes).toMatchObject({ "error.type": "502", "http.response.status_code": 502 });

    const refused = spanOfRow(row({ outcome: "refused", error: "HTTP 401", session: null }), {
      principal: false,
    });
    expect(refused.attributes).toMatchObject({ "error.type": "401", "metamcp.outcome": "refused" });
    expect(refused.attributes["mcp.session.id"]).toBeUndefined();
    expect(refused.error).toBeDefined();

    const cut = spanOfRow(row({ outcome: "cut", error: "the client went away" }), { principal: false });
    expect(cut.attributes["error.type"]).toBe("cut");
    expect(cut.error).toBeDefined();
  });

  it("enduser.id only when the deployer asks for it", () => {
    expect(spanOfRow(row({}), { principal: true }).attributes["enduser.id"]).toBe("ada@example.com");
  });

  it("an error message is masked by the secret registry at export time too", () => {
    registerSecret("tok-0123456789abcdef");
    const s = spanOfRow(
      row({ outcome: "protocol_error", error: "bad token tok-0123456789abcdef (-32603)" }),
      {
        principal: false,
      },
    );
    expect(s.error?.message).toBe("bad token **** (-32603)");
  });

  it("never the arguments, whatever the audit keeps of them", () => {
    const s = spanOfRow(
      row({ method: "tools/call", tool: "x", arguments: '{"password":"hunter2hunter2"}' }),
      {
        principal: true,
      },
    );
    expect(JSON.stringify(s)).not.toContain("hunter2");
  });
});
