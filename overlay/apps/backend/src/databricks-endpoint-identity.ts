// metamcp-databricks' own module (overlay/, copied in by prepare; patch endpoint-identity wires it). NOT MetaMCP's code: it lets an MCP endpoint
// accept the Databricks workspace identity the Apps proxy asserts, instead of a MetaMCP API key.
// Per endpoint, stored in OUR table <schema>.databricks_endpoint_identity (created by the runtime at start, never by
// MetaMCP's migrations). An endpoint without a row follows METAMCP_ENDPOINT_IDENTITY_DEFAULT (on unless "off"):
// the runtime gives every endpoint that existed before the table an explicit "off" row, so upgrading
// changes no existing endpoint.
import type { IncomingMessage, ServerResponse } from "node:http";

import { type SQL, sql } from "drizzle-orm";

import { findOrCreateIdentityUser, trustedIdentity } from "./databricks-identity";
import { DATABRICKS_SCHEMA } from "./databricks-schema";
import { db } from "./db/index";

interface EndpointRow {
  uuid: string;
  name?: string;
  user_id?: string | null;
  enable_api_key_auth?: boolean;
  enable_oauth?: boolean;
}

type IdentityRequest = IncomingMessage & {
  endpoint?: EndpointRow;
  apiKeyUserId?: string;
  apiKeyUuid?: string;
  authMethod?: string;
  databricksIdentity?: string;
};

const IDENTITY_TABLE = `"${DATABRICKS_SCHEMA}"."databricks_endpoint_identity"`;
const ENDPOINTS_TABLE = `"${DATABRICKS_SCHEMA}"."endpoints"`;

const DEFAULT_ACCEPTS =
  (process.env.METAMCP_ENDPOINT_IDENTITY_DEFAULT ?? "on").trim().toLowerCase() !== "off";

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): true {
  res.statusCode = status;
  res.setHeader("content-type", "application/json; charset=utf-8");
  res.end(JSON.stringify({ ...body, timestamp: new Date().toISOString() }));
  return true;
}

// drizzle's node-postgres driver answers execute() with pg's QueryResult; other drivers with the rows.
async function rows<T>(query: SQL): Promise<T[]> {
  // biome-ignore lint: the result type differs per drizzle driver
  const result: any = await db.execute(query);
  return (Array.isArray(result) ? result : (result?.rows ?? [])) as T[];
}

/** The endpoint's choice: its row, else the default. Unreadable table (runtime not ours): never. */
export async function endpointAcceptsIdentity(
  endpointUuid: string,
): Promise<{ accepts: boolean; explicit: boolean }> {
  try {
    const found = await rows<{ accept_identity: boolean }>(
      sql`SELECT accept_identity FROM ${sql.raw(IDENTITY_TABLE)} WHERE endpoint_uuid = ${endpointUuid}`,
    );
    if (found[0]) return { accepts: found[0].accept_identity === true, explicit: true };
    return { accepts: DEFAULT_ACCEPTS, explicit: false };
  } catch (error) {
    console.error(
      `databricks endpoint identity: cannot read ${DATABRICKS_SCHEMA}.databricks_endpoint_identity; API keys only:`,
      error,
    );
    return { accepts: false, explicit: false };
  }
}

/**
 * A MetaMCP credential of the client's own, where upstream looks for one (X-API-Key, Authorization: Bearer,
 * ?api_key= when the endpoint allows it). Our router removes a Databricks token from Authorization, so what
 * is left there is MetaMCP's.
 */
function carriesMetamcpCredential(
  req: IncomingMessage,
  endpoint: EndpointRow & { use_query_param_auth?: boolean },
): boolean {
  if (req.headers["x-api-key"]) return true;
  if (String(req.headers.authorization ?? "").startsWith("Bearer ")) return true;
  if (endpoint.enable_api_key_auth && endpoint.use_query_param_auth) {
    const query = new URL(req.url ?? "/", "http://localhost").searchParams;
    if (query.get("api_key") || query.get("apikey")) return true;
  }
  return false;
}

/** Upstream's rule for API keys of users, applied to the identity's user. */
function accessDenied(endpoint: EndpointRow, userId: string): string | undefined {
  if (endpoint.user_id === null || endpoint.user_id === undefined || endpoint.user_id === userId)
    return undefined;
  return "You can only access endpoints you own or public endpoints.";
}

/**
 * Called first in MetaMCP's authenticateApiKey. Returns true when it answered or passed the request on
 * (next() called), false to leave the request to upstream's checks unchanged (an API key still works).
 */
export async function acceptDatabricksIdentity(
  req: IncomingMessage,
  res: ServerResponse,
  next: (err?: unknown) => void,
): Promise<boolean> {
  const authReq = req as IdentityRequest;
  const endpoint = authReq.endpoint;
  if (!endpoint?.uuid) return false;
  // An endpoint with no authentication at all is open upstream: nothing to decide.
  if (!endpoint.enable_api_key_auth && !endpoint.enable_oauth) return false;
  // A client that sends its own MetaMCP key (or OAuth token) is checked by upstream exactly as before:
  // the identity stands in for a missing key, never overrides one.
  if (carriesMetamcpCredential(req, endpoint)) return false;
  const identity = trustedIdentity(req.headers);
  if (!identity) return false;
  if (!(await endpointAcceptsIdentity(endpoint.uuid)).accepts) return false;
  let user: { id: string };
  try {
    user = await findOrCreateIdentityUser(identity, "/callback/databricks-mcp");
  } catch (error) {
    return sendJson(res, 403, {
      error: "Access denied",
      message: `No MetaMCP user for ${identity.email}: ${error instanceof Error ? error.message : String(error)}`,
    });
  }
  const denied = accessDenied(endpoint, user.id);
  if (denied) return sendJson(res, 403, { error: "Access denied", message: denied });
  // The fields upstream sets for a user's API key (no key here).
  authReq.apiKeyUserId = user.id;
  authReq.apiKeyUuid = undefined;
  authReq.authMethod = "api_key";
  authReq.databricksIdentity = identity.email;
  next();
  return true;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  // biome-ignore lint: a body parser may have run already
  const parsed = (req as any).body;
  if (parsed && typeof parsed === "object") return parsed as Record<string, unknown>;
  let text = "";
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 10_000) throw new Error("body too large");
  }
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

/**
 * Mounted at /metamcp/_databricks/endpoint-identity: GET /<endpoint> says whether the endpoint accepts the identity
 * (for `connect`); PUT /<endpoint> {"acceptIdentity": true|false} changes it. Only a request with a trusted
 * identity (through the Apps proxy) gets an answer; a change needs the right upstream needs to edit the
 * endpoint (a private endpoint's owner; any user for a public one).
 */
export async function databricksEndpointIdentitySettings(
  req: IncomingMessage,
  res: ServerResponse,
  _next?: unknown,
): Promise<void> {
  try {
    const name = decodeURIComponent((req.url ?? "/").split("?")[0]!.replace(/^\/+|\/+$/g, ""));
    if (!/^[a-zA-Z0-9_-]+$/.test(name)) {
      sendJson(res, 404, {
        error: "not_found",
        message: "Use /metamcp/_databricks/endpoint-identity/<endpoint name>",
      });
      return;
    }
    const identity = trustedIdentity(req.headers);
    if (!identity) {
      sendJson(res, 401, {
        error: "identity_required",
        message: "Only a request through the Databricks Apps proxy, signed in to the workspace, can use this",
      });
      return;
    }
    const user = await findOrCreateIdentityUser(identity, "/callback/databricks-mcp");
    const found = await rows<EndpointRow>(
      sql`SELECT uuid, name, user_id, enable_api_key_auth, enable_oauth FROM ${sql.raw(ENDPOINTS_TABLE)} WHERE name = ${name}`,
    );
    // Older releases allow one name per owner: the caller's own, else the public one.
    const endpoint =
      found.find((e) => e.user_id === user.id) ?? found.find((e) => e.user_id === null) ?? found[0];
    if (!endpoint) {
      sendJson(res, 404, { error: "Endpoint not found", message: `No endpoint found with name: ${name}` });
      return;
    }
    if (req.method === "GET" || req.method === "HEAD") {
      const denied = accessDenied(endpoint, user.id);
      if (denied) {
        sendJson(res, 403, { error: "Access denied", message: denied });
        return;
      }
      const state = await endpointAcceptsIdentity(endpoint.uuid);
      sendJson(res, 200, {
        endpoint: name,
        acceptIdentity: state.accepts,
        explicit: state.explicit,
        default: DEFAULT_ACCEPTS,
        apiKeyAuth: endpoint.enable_api_key_auth === true,
        oauth: endpoint.enable_oauth === true,
        public: endpoint.user_id === null,
        you: identity.email,
      });
      return;
    }
    if (req.method === "PUT" || req.method === "POST") {
      if (endpoint.user_id && endpoint.user_id !== user.id) {
        sendJson(res, 403, {
          error: "Access denied",
          message: "Access denied: You can only update endpoints you own",
        });
        return;
      }
      const body = await readJson(req).catch(() => undefined);
      const accept = body?.acceptIdentity;
      if (typeof accept !== "boolean") {
        sendJson(res, 400, {
          error: "bad_request",
          message: 'Send {"acceptIdentity": true} or {"acceptIdentity": false}',
        });
        return;
      }
      await db.execute(
        sql`INSERT INTO ${sql.raw(IDENTITY_TABLE)} (endpoint_uuid, accept_identity, updated_by, updated_at)
            VALUES (${endpoint.uuid}, ${accept}, ${identity.email}, now())
            ON CONFLICT (endpoint_uuid) DO UPDATE SET accept_identity = EXCLUDED.accept_identity,
              updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at`,
      );
      console.log(
        `databricks endpoint identity: ${identity.email} set ${name} to ${accept ? "accept" : "refuse"} the workspace identity`,
      );
      sendJson(res, 200, {
        endpoint: name,
        acceptIdentity: accept,
        explicit: true,
        default: DEFAULT_ACCEPTS,
      });
      return;
    }
    res.setHeader("allow", "GET, PUT");
    sendJson(res, 405, { error: "method_not_allowed", message: "GET or PUT" });
  } catch (error) {
    console.error("databricks endpoint identity settings:", error);
    if (!res.headersSent)
      sendJson(res, 500, {
        error: "Internal server error",
        message: error instanceof Error ? error.message : String(error),
      });
  }
}
