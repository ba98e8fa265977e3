/**
 * Which workspace paths the tools gateway forwards (docs/databricks-tools-design.md §4): Databricks' managed
 * MCP servers under `/api/2.0/mcp/`, spelled exactly one way. The gateway attaches the app's workspace token
 * to what it forwards, so anything a proxy or the workspace could read as another path (`..`, `%2e%2e`,
 * `%2F`, `//`, `\`, another case) is refused here rather than normalised: a refusal is a log line, a
 * normalisation is a guess about how the far side parses.
 */

export const MCP_PREFIX = "/api/2.0/mcp/";

/** The managed servers (design §1.1) and how many path segments follow the kind: [min, max]. */
export const MCP_KINDS = {
  genie: [0, 1],
  sql: [0, 0],
  functions: [2, 3],
  "vector-search": [2, 3],
  external: [1, 1],
} as const satisfies Record<string, readonly [number, number]>;
export type McpKind = keyof typeof MCP_KINDS;

/** What each kind's ids are, for the refusal sentence. */
const SHAPES: Record<McpKind, string> = {
  genie: "/api/2.0/mcp/genie or /api/2.0/mcp/genie/<space id>",
  sql: "/api/2.0/mcp/sql",
  functions: "/api/2.0/mcp/functions/<catalog>/<schema>[/<function>]",
  "vector-search": "/api/2.0/mcp/vector-search/<catalog>/<schema>[/<index>]",
  external: "/api/2.0/mcp/external/<connection>",
};

/**
 * Unity Catalog names, Genie space ids and connection names as they appear in these URLs: letters, digits,
 * `_`, `-` and `.` (never alone or doubled as a whole segment). Anything else would need percent-encoding,
 * which is refused as a whole.
 */
const SEGMENT = /^[A-Za-z0-9_.-]+$/;

export type CanonicalPath =
  | { ok: true; path: string; kind: McpKind; ids: string[] }
  | { ok: false; reason: string };

const refuse = (reason: string): CanonicalPath => ({ ok: false, reason });

/** `raw` is a request's path as sent (no query: the caller splits it off first). */
export function canonicalMcpPath(raw: string): CanonicalPath {
  if (raw.includes("?")) return refuse("a query string where only a path belongs");
  if (raw.includes("%")) return refuse("percent-encoding in the path (%2e, %2F, …) is never forwarded");
  if (raw.includes("\\")) return refuse("a backslash in the path");
  if (raw === MCP_PREFIX.slice(0, -1)) return refuse("no managed MCP server kind after /api/2.0/mcp");
  if (!raw.startsWith(MCP_PREFIX))
    return raw.startsWith("//")
      ? refuse("an empty path segment (//); only /api/2.0/mcp/… is forwarded")
      : refuse("only /api/2.0/mcp/… paths are forwarded");
  const segments = raw.slice(MCP_PREFIX.length).split("/");
  for (const s of segments) {
    if (s === "") return refuse("an empty path segment (// or a trailing /)");
    if (s === "." || s === "..") return refuse(`a "${s}" path segment`);
    if (!SEGMENT.test(s)) return refuse("a character outside letters, digits, _ - . in the path");
  }
  const [kind, ...ids] = segments;
  if (!kind || !Object.hasOwn(MCP_KINDS, kind))
    return refuse(
      `not a managed MCP server kind this app knows (${Object.keys(MCP_KINDS).join(", ")}, in lower case)`,
    );
  const k = kind as McpKind;
  const [min, max] = MCP_KINDS[k];
  if (ids.length < min || ids.length > max) return refuse(`a ${k} server's path is ${SHAPES[k]}`);
  return { ok: true, path: raw, kind: k, ids };
}

/** The kind and ids of a forwardable path, or undefined for any path the gateway refuses. */
export function classifyMcpPath(raw: string): { kind: McpKind; ids: string[] } | undefined {
  const r = canonicalMcpPath(raw);
  return r.ok ? { kind: r.kind, ids: r.ids } : undefined;
}
