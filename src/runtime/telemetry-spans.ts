import { maskSecrets } from "../log/secrets.js";
import type { AuditRow } from "./audit-rows.js";

/**
 * An audit row as an OpenTelemetry span, after the MCP semantic conventions (docs/audit.md "Telemetry"):
 * plain data, built here in the runtime bundle (where the secret registry lives) and handed to the exporter
 * module (telemetry-export.ts), which is loaded only when telemetry is on.
 *
 * What a span never carries: arguments or results (the conventions make them opt-in; we never opt in),
 * a session id (the row's session is already a hash), a key or a token, a tool's error text (a tool's output
 * is a result). What it carries is what the audit table holds without arguments, masked again here.
 */
export interface SpanData {
  name: string;
  startTimeMs: number;
  endTimeMs: number;
  attributes: Record<string, string | number>;
  /** Unset (undefined) or error, with the JSON-RPC error's message (masked) when there is one. */
  error?: { message?: string };
}

/**
 * JSON-RPC codes the conventions say a server SHOULD NOT count as errors: the caller sent a request the
 * server could not serve (semantic-conventions-genai model/mcp/common.yaml, mcp.server.status.attributes).
 */
const CALLER_ERROR_CODES = new Set([-32700, -32600, -32601, -32602, -32002]);

/** The JSON-RPC code the observer appends to an error's message: `message (code)`. */
function jsonRpcCode(error: string | null): number | undefined {
  const m = error ? /\((-?\d+)\)$/.exec(error) : null;
  return m ? Number(m[1]) : undefined;
}

/** `HTTP 401` as the observer writes a refusal or an HTTP failure. */
function httpStatus(error: string | null): number | undefined {
  const m = error ? /^HTTP (\d{3})$/.exec(error) : null;
  return m ? Number(m[1]) : undefined;
}

export function spanOfRow(row: AuditRow, options: { principal: boolean }): SpanData {
  const named = row.method === "tools/call" || row.method === "prompts/get";
  // MetaMCP's own name for the tool (`server__tool`) is what the client called: that is gen_ai.tool.name.
  const target = named && row.tool !== null ? (row.server ? `${row.server}__${row.tool}` : row.tool) : null;
  const attributes: Record<string, string | number> = {
    "mcp.method.name": row.method,
    // Streamable HTTP and SSE both ride HTTP over TCP (the conventions: `tcp` for HTTP, `pipe` for stdio).
    "network.transport": "tcp",
    "network.protocol.name": "http",
    "metamcp.outcome": row.outcome,
    "metamcp.request.size": row.requestBytes,
  };
  if (row.method === "tools/call" && target !== null) {
    attributes["gen_ai.tool.name"] = target;
    attributes["gen_ai.operation.name"] = "execute_tool";
  }
  if (row.method === "prompts/get" && target !== null) attributes["gen_ai.prompt.name"] = target;
  // The observer has masked and capped it already (a URI may carry a token in its query); it stays out of
  // the span name (the conventions: high cardinality).
  if (row.method === "resources/read" && row.tool !== null) attributes["mcp.resource.uri"] = row.tool;
  if (row.session !== null) attributes["mcp.session.id"] = row.session;
  if (row.responseBytes !== null) attributes["metamcp.response.size"] = row.responseBytes;
  if (row.endpoint !== null) attributes["metamcp.endpoint"] = row.endpoint;
  if (row.namespace !== null) attributes["metamcp.namespace"] = row.namespace;
  if (row.server !== null && named) attributes["metamcp.server"] = row.server;
  if (row.client !== null) attributes["metamcp.client"] = row.client;
  // enduser.id: the semantic conventions' attribute for "who" (an email, a user name or another id); it is
  // personal data, so only when the deployer says so (METAMCP_TELEMETRY_PRINCIPAL=on).
  if (options.principal) attributes["enduser.id"] = row.principal;

  let error: SpanData["error"];
  const code = row.outcome === "protocol_error" ? jsonRpcCode(row.error) : undefined;
  const status = httpStatus(row.error);
  if (code !== undefined) attributes["rpc.response.status_code"] = String(code);
  if (status !== undefined) attributes["http.response.status_code"] = status;
  if (row.outcome === "tool_error") {
    // The conventions: a CallToolResult with isError is `tool_error`. Its text is the tool's output: not sent.
    attributes["error.type"] = "tool_error";
    error = {};
  } else if (row.outcome === "protocol_error") {
    if (code === undefined || !CALLER_ERROR_CODES.has(code)) {
      attributes["error.type"] =
        code !== undefined ? String(code) : status !== undefined ? String(status) : "_OTHER";
      error = { message: row.error ? maskSecrets(row.error) : undefined };
    }
  } else if (row.outcome === "refused") {
    attributes["error.type"] = status !== undefined ? String(status) : "refused";
    error = { message: row.error ? maskSecrets(row.error) : undefined };
  } else if (row.outcome === "cut") {
    attributes["error.type"] = "cut";
    error = { message: "the client went away, or the stream ended, before the answer" };
  }

  const startTimeMs = row.calledAt.getTime();
  return {
    name: target !== null ? `${row.method} ${target}` : row.method,
    startTimeMs,
    endTimeMs: startTimeMs + row.durationMs,
    attributes,
    error,
  };
}
