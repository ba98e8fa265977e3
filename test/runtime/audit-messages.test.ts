import { describe, expect, it, vi } from "vitest";
import { clearSecrets, registerSecret } from "../../src/log/secrets.js";
import {
  answersInBody,
  answersInText,
  BodyTap,
  MAX_PARSED_BYTES,
  requestsIn,
} from "../../src/runtime/audit-messages.js";
import { argumentsColumn, auditPrincipal, splitToolName } from "../../src/runtime/audit-rows.js";

const tapOf = (text: string, chunk = 1000) => {
  const tap = new BodyTap();
  const b = Buffer.from(text);
  for (let i = 0; i < b.length; i += chunk) tap.add(b.subarray(i, i + chunk));
  return tap;
};

describe("reading JSON-RPC as it passes, within a cap", () => {
  it("a batch: every audited request, not notifications or pings", () => {
    const body = JSON.stringify([
      { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "gh__search", arguments: { q: "x" } } },
      { jsonrpc: "2.0", method: "notifications/initialized" },
      { jsonrpc: "2.0", id: 2, method: "ping" },
      { jsonrpc: "2.0", id: "r", method: "resources/read", params: { uri: "file:///a" } },
    ]);
    expect(requestsIn(tapOf(body))).toEqual([
      { key: "1", method: "tools/call", name: "gh__search", arguments: { q: "x" } },
      { key: '"r"', method: "resources/read", name: "file:///a" },
    ]);
  });

  it("a request over the cap is read by its ends: method and name from the head, id from the tail", () => {
    const big = "y".repeat(MAX_PARSED_BYTES * 3);
    const body = JSON.stringify({
      method: "tools/call",
      params: { name: "fs__write", arguments: { big } },
      jsonrpc: "2.0",
      id: 42,
    });
    const tap = tapOf(body, 7000);
    expect(tap.oversize).toBe(true);
    expect(tap.bytes).toBe(Buffer.byteLength(body));
    expect(requestsIn(tap)).toEqual([{ key: "42", method: "tools/call", name: "fs__write" }]);
  });

  it("answers: ok, tool_error with its text, protocol_error with code; over the cap by their ends", () => {
    expect(answersInText(JSON.stringify({ jsonrpc: "2.0", id: 1, result: { content: [] } }))).toEqual([
      { key: "1", outcome: "ok" },
    ]);
    expect(
      answersInText(
        JSON.stringify({
          jsonrpc: "2.0",
          id: 2,
          result: { content: [{ type: "text", text: "no\nway" }], isError: true },
        }),
      ),
    ).toEqual([{ key: "2", outcome: "tool_error", error: "no way" }]);
    expect(
      answersInText(
        JSON.stringify({ jsonrpc: "2.0", id: 3, error: { code: -32601, message: "Method not found" } }),
      ),
    ).toEqual([{ key: "3", outcome: "protocol_error", error: "Method not found (-32601)" }]);
    const big = "z".repeat(MAX_PARSED_BYTES * 2);
    const fail = JSON.stringify({
      result: { content: [{ type: "text", text: big }], isError: true },
      jsonrpc: "2.0",
      id: 9,
    });
    expect(answersInBody(tapOf(fail, 9000))).toEqual([
      { key: "9", outcome: "tool_error", error: "a tool error too large to read" },
    ]);
    const ok = JSON.stringify({ result: { content: [{ type: "text", text: big }] }, jsonrpc: "2.0", id: 10 });
    expect(answersInText(ok)).toEqual([{ key: "10", outcome: "ok" }]);
  });

  it("an answer as the SDK writes it (result first, id last) is told without parsing its result", () => {
    const parse = vi.spyOn(JSON, "parse");
    try {
      const result = { content: [{ type: "text", text: "x".repeat(50_000) }] };
      expect(answersInText(JSON.stringify({ result, jsonrpc: "2.0", id: 7 }))).toEqual([
        { key: "7", outcome: "ok" },
      ]);
      expect(answersInText(JSON.stringify({ result, jsonrpc: "2.0", id: 'a"b' }))).toEqual([
        { key: JSON.stringify('a"b'), outcome: "ok" },
      ]);
      // Only the ids were parsed, never a result.
      expect(parse.mock.calls.map((c) => c[0])).toEqual(["7", JSON.stringify('a"b')]);
    } finally {
      parse.mockRestore();
    }
  });

  it("by its shape only when it cannot be anything else: isError anywhere, errors, the server's requests are parsed", () => {
    const sdk = (m: object) => JSON.stringify(m);
    // isError at the top of the result: a tool error, with its text.
    expect(
      answersInText(
        sdk({ result: { content: [{ type: "text", text: "bad" }], isError: true }, jsonrpc: "2.0", id: 1 }),
      ),
    ).toEqual([{ key: "1", outcome: "tool_error", error: "bad" }]);
    // Nested in structured content it is not the result's: ok, found by a full parse.
    expect(
      answersInText(
        sdk({ result: { content: [], structuredContent: { isError: true } }, jsonrpc: "2.0", id: 2 }),
      ),
    ).toEqual([{ key: "2", outcome: "ok" }]);
    // An error as the SDK writes it (id before error).
    expect(
      answersInText(sdk({ jsonrpc: "2.0", id: 3, error: { code: -32602, message: "Invalid params" } })),
    ).toEqual([{ key: "3", outcome: "protocol_error", error: "Invalid params (-32602)" }]);
    // The server's own request on the stream (sampling, elicitation) is no answer, though it has an id.
    expect(
      answersInText(sdk({ method: "sampling/createMessage", params: {}, jsonrpc: "2.0", id: 0 })),
    ).toEqual([]);
    // A result whose last key is not the id (another writer): parsed whole, the id found where it is.
    expect(answersInText(sdk({ result: { content: [] }, id: 4, jsonrpc: "2.0" }))).toEqual([
      { key: "4", outcome: "ok" },
    ]);
    // Not JSON after all: nothing.
    expect(answersInText('{"result":{"content":[}')).toEqual([]);
  });

  it("rows: tool names split as MetaMCP names them; principal only from the proxy's identity; arguments masked under full", () => {
    expect(splitToolName("github__search_code")).toEqual({ server: "github", tool: "search_code" });
    expect(splitToolName("plain")).toEqual({ server: null, tool: "plain" });
    expect(auditPrincipal({ "x-forwarded-email": " Ada@Example.com ", "x-api-key": "sk_mt_k" })).toBe(
      "ada@example.com",
    );
    expect(auditPrincipal({ "x-forwarded-user": "7d1e-sp" })).toBe("7d1e-sp");
    expect(auditPrincipal({ "x-api-key": "sk_mt_0123456789", authorization: "Bearer x" })).toBe("anonymous");
    registerSecret("sekrit-value-123456");
    try {
      expect(argumentsColumn({ token: "sekrit-value-123456" }, "full")).toBe('{"token":"****"}');
      expect(argumentsColumn({ a: "b".repeat(10_000) }, "full")!.length).toBe(4096);
      expect(argumentsColumn({ a: 1 }, "off")).toBeNull();
    } finally {
      clearSecrets();
    }
  });
});
