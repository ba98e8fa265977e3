import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { maskSecrets } from "../log/secrets.js";

/**
 * One row of `<schema>.databricks_tool_calls` (docs/audit.md): who called what, when, with what outcome.
 * Never a session id, a key or a token: the session is a hash, the principal is what the Apps proxy said.
 */
export interface AuditRow {
  calledAt: Date;
  principal: string;
  endpoint: string | null;
  namespace: string | null;
  server: string | null;
  tool: string | null;
  method: string;
  durationMs: number;
  outcome: AuditOutcome;
  error: string | null;
  client: string | null;
  session: string | null;
  requestBytes: number;
  responseBytes: number | null;
  arguments: string | null;
}

export const AUDIT_OUTCOMES = ["ok", "tool_error", "protocol_error", "refused", "cut"] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/** METAMCP_AUDIT_ARGUMENTS: nothing of the arguments (default), a hash of them, or them (masked, capped). */
export const AUDIT_ARGUMENT_MODES = ["off", "hash", "full"] as const;
export type AuditArgumentMode = (typeof AUDIT_ARGUMENT_MODES)[number];

/** The JSON-RPC methods that get a row; pings, notifications and list-changed chatter do not. */
export const AUDITED_METHODS = new Set([
  "initialize",
  "tools/list",
  "tools/call",
  "resources/list",
  "resources/read",
  "prompts/list",
  "prompts/get",
]);

/** `arguments` under `full`: masked by the secret registry, then cut to this many characters. */
export const MAX_ARGUMENT_CHARS = 4096;
/** `error`: short, one line. */
export const MAX_ERROR_CHARS = 300;

/**
 * Who the row is about: the identity the Apps proxy vouched for (the router has already removed identity
 * headers from peers it does not trust, proxy-trust.ts), i.e. a person's email or a service principal's id.
 * Never a MetaMCP key or a token: a caller without a proxy identity is `anonymous`.
 */
export function auditPrincipal(headers: IncomingHttpHeaders): string {
  const email = headers["x-forwarded-email"];
  if (typeof email === "string" && email.trim() !== "") return email.trim().toLowerCase();
  const user = headers["x-forwarded-user"];
  if (typeof user === "string" && user.trim() !== "") return user.trim().toLowerCase();
  return "anonymous";
}

/** A session's name in the table: a hash, so a row never holds an id that could be replayed. */
export function sessionHash(sessionId: string): string {
  return createHash("sha256").update(`metamcp-audit:${sessionId}`).digest("base64url").slice(0, 16);
}

/** MetaMCP names a namespace's tools (and prompts) `<server>__<tool>`. */
export function splitToolName(name: string): { server: string | null; tool: string } {
  const i = name.indexOf("__");
  if (i <= 0) return { server: null, tool: name };
  return { server: name.slice(0, i), tool: name.slice(i + 2) };
}

export function shortError(text: string): string {
  const one = maskSecrets(text).replace(/\s+/g, " ").trim();
  return one.length > MAX_ERROR_CHARS ? `${one.slice(0, MAX_ERROR_CHARS - 1)}…` : one;
}

/** What `arguments` holds for a call under `mode` (undefined arguments: null in every mode). */
export function argumentsColumn(args: unknown, mode: AuditArgumentMode): string | null {
  if (mode === "off" || args === undefined) return null;
  const json = JSON.stringify(args) ?? "null";
  if (mode === "hash") return `sha256:${createHash("sha256").update(json).digest("hex")}`;
  const masked = maskSecrets(json);
  return masked.length > MAX_ARGUMENT_CHARS ? `${masked.slice(0, MAX_ARGUMENT_CHARS - 1)}…` : masked;
}

/** `metamcp/<endpoint>` → endpoint; `mcp-proxy/metamcp/<namespace uuid>` → namespace (MetaMCP's UI inspector). */
export function endpointAndNamespace(scope: string): { endpoint: string | null; namespace: string | null } {
  if (scope.startsWith("metamcp/")) return { endpoint: scope.slice("metamcp/".length), namespace: null };
  if (scope.startsWith("mcp-proxy/metamcp/"))
    return { endpoint: null, namespace: scope.slice("mcp-proxy/metamcp/".length) };
  return { endpoint: null, namespace: null };
}
