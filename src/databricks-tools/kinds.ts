import { EXIT, UserError } from "../errors.js";

/**
 * Databricks' managed MCP servers as `databricks-tools add` names them, and the workspace path each lives at
 * (docs/databricks-tools-design.md §1.1; the sources are cited there and in docs/databricks-tools-cli.md).
 */
export const TOOL_KINDS = ["genie", "genie-one", "sql", "functions", "search", "connection"] as const;
export type ToolKind = (typeof TOOL_KINDS)[number];

export interface ToolServer {
  kind: ToolKind;
  /** The ids in the path: a space id; catalog, schema[, function or index]; a connection's name. */
  ids: string[];
  /** The path on the workspace host, `/api/2.0/mcp/…`. */
  path: string;
}

/** What each kind takes after its name (for messages and help). */
export const KIND_USAGE: Record<ToolKind, string> = {
  genie: "genie <space-id>",
  "genie-one": "genie-one",
  sql: "sql",
  functions: "functions <catalog>.<schema>[.<function>]",
  search: "search <catalog>.<schema>[.<index>]",
  connection: "connection <name>",
};

/**
 * The OAuth scope a per-person token needs for each kind besides `all-apis` (§1.1); undefined where no source
 * names it (search, external connections: unverified).
 */
export const KIND_SCOPE: Record<ToolKind, string | undefined> = {
  genie: "genie",
  "genie-one": "genie",
  sql: "sql",
  functions: "unity-catalog",
  search: undefined,
  connection: undefined,
};

/** A Genie space id: Databricks' are 32 hex digits; the stand-in's `local-sales`. Letters, digits, - and _. */
const SPACE_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
/** A Unity Catalog name as it can stand in a URL path unquoted: letters, digits, _ and -. */
const UC_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,254}$/;

function kindOf(value: string): ToolKind {
  const kind = TOOL_KINDS.find((k) => k === value.toLowerCase());
  if (!kind)
    throw new UserError(
      "unknown_tool_kind",
      `unknown kind of Databricks server "${value}": expected one of ${TOOL_KINDS.join(", ")}`,
      EXIT.input,
      `for example \`databricks-tools add ${KIND_USAGE.functions}\``,
    );
  return kind;
}

function ucNames(kind: ToolKind, value: string | undefined, min: number, max: number): string[] {
  const parts = (value ?? "").split(".");
  if (!value || parts.length < min || parts.length > max || !parts.every((p) => UC_NAME.test(p)))
    throw new UserError(
      "bad_tool_ids",
      value
        ? `"${value}" is not a Unity Catalog name of the form ${KIND_USAGE[kind].slice(kind.length + 1)} (letters, digits, _ and - in each part)`
        : `${kind} needs ${KIND_USAGE[kind].slice(kind.length + 1)}`,
      EXIT.input,
      `usage: databricks-tools add ${KIND_USAGE[kind]}`,
    );
  return parts;
}

/** `add <kind> [ids]` → the server's kind, ids and path; a sentence saying what is wrong otherwise. */
export function parseToolServer(kindArg: string, idsArg: string | undefined): ToolServer {
  const kind = kindOf(kindArg);
  const none = () => {
    if (idsArg !== undefined)
      throw new UserError(
        "bad_tool_ids",
        `${kind} takes no ids (got "${idsArg}")`,
        EXIT.input,
        `usage: databricks-tools add ${KIND_USAGE[kind]}`,
      );
  };
  switch (kind) {
    case "genie": {
      if (!idsArg || !SPACE_ID.test(idsArg))
        throw new UserError(
          "bad_space_id",
          idsArg
            ? `"${idsArg}" is not a Genie space id (letters, digits, - and _; the id is the last part of the space's URL, …/genie/rooms/<space-id>)`
            : "genie needs the Genie space's id (the last part of the space's URL, …/genie/rooms/<space-id>)",
          EXIT.input,
          `usage: databricks-tools add ${KIND_USAGE.genie}; or \`add genie-one\` for Genie across spaces`,
        );
      return { kind, ids: [idsArg], path: `/api/2.0/mcp/genie/${idsArg}` };
    }
    case "genie-one":
      none();
      return { kind, ids: [], path: "/api/2.0/mcp/genie" };
    case "sql":
      none();
      return { kind, ids: [], path: "/api/2.0/mcp/sql" };
    case "functions": {
      const ids = ucNames(kind, idsArg, 2, 3);
      return { kind, ids, path: `/api/2.0/mcp/functions/${ids.join("/")}` };
    }
    case "search": {
      const ids = ucNames(kind, idsArg, 2, 3);
      return { kind, ids, path: `/api/2.0/mcp/vector-search/${ids.join("/")}` };
    }
    case "connection": {
      const ids = ucNames(kind, idsArg, 1, 1);
      return { kind, ids, path: `/api/2.0/mcp/external/${ids[0]}` };
    }
  }
}

/** The workspace host's origin, as `DATABRICKS_HOST` or a profile gives it (with or without the scheme). */
export function workspaceOrigin(host: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(host) ? host : `https://${host}`;
  return new URL(withScheme).origin;
}

export function toolServerUrl(host: string, server: ToolServer): string {
  return `${workspaceOrigin(host)}${server.path}`;
}

/**
 * Who calls a managed server (design §3): the app's service principal, or with `#identity=user` on the URL each
 * person with their own token (the user-authorization slice).
 */
export function identityOfUrl(url: string): "app" | "user" {
  return /#(?:.*&)?identity=user(?:&|$)/.test(url) ? "user" : "app";
}

/**
 * The kind and ids of a MetaMCP server's URL when it is one of this workspace's managed servers; undefined for
 * any other URL (another host, another path). A fragment (`#identity=user`) does not change the server.
 */
export function classifyToolUrl(url: string | null | undefined, host: string): ToolServer | undefined {
  if (!url) return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.origin !== workspaceOrigin(host)) return undefined;
  const parts = u.pathname.split("/").filter(Boolean);
  if (parts.slice(0, 3).join("/") !== "api/2.0/mcp") return undefined;
  const [head, ...rest] = parts.slice(3);
  const as = (kind: ToolKind, ids: string[]): ToolServer => ({ kind, ids, path: u.pathname });
  if (head === "genie") return rest.length === 0 ? as("genie-one", []) : as("genie", rest);
  if (head === "sql" && rest.length === 0) return as("sql", []);
  if (head === "functions") return as("functions", rest);
  if (head === "vector-search") return as("search", rest);
  if (head === "external") return as("connection", rest);
  return undefined;
}

/**
 * A MetaMCP server name for it (MetaMCP allows letters, digits, _ and -, never `__`):
 * `databricks-functions-main-tools`, `databricks-genie-<space>`.
 */
export function defaultServerName(server: ToolServer): string {
  return ["databricks", server.kind, ...server.ids]
    .join("-")
    .replace(/[^A-Za-z0-9_-]/g, "-")
    .replace(/_{2,}/g, "_");
}

/** MetaMCP's own rule for a server name (CreateMcpServerRequestSchema), said before any request. */
export function checkServerName(name: string): string {
  if (!/^[a-zA-Z0-9_-]+$/.test(name) || /_{2,}/.test(name))
    throw new UserError(
      "bad_server_name",
      `"${name}" is not a MetaMCP server name (letters, digits, _ and - only, no "__")`,
      EXIT.input,
      "pick another with --name",
    );
  return name;
}
