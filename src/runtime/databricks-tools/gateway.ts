import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { maskSecrets, registerSecret } from "../../log/secrets.js";
import { CONTEXT_HEADER, type ToolContexts } from "./contexts.js";
import { explain, REFUSALS, toolErrorResult } from "./errors.js";
import { canonicalMcpPath } from "./paths.js";
import type { CurrentToken } from "./tokens.js";

/**
 * The tools gateway (docs/databricks-tools.md; design §2): MetaMCP's backend sends every request for the
 * app's workspace here (its fetch wrapper, overlay/apps/backend/src/databricks-tools.ts), and only here is a
 * workspace token attached. So the backend never holds one, and this one piece of our own code decides what
 * reaches the workspace:
 * - loopback only, and only with the per-start secret (constant-time compare): another process in the app
 *   gets 401;
 * - only `/api/2.0/mcp/<kind>/…` spelled one way (paths.ts), forwarded to the configured workspace origin,
 *   never to a host the request names; a redirect is refused, never followed;
 * - request and response headers on allow-lists: no cookie, identity header or key goes out; no
 *   `set-cookie` or `www-authenticate` comes back (MetaMCP would start OAuth discovery against the workspace);
 * - bodies streamed as they come (SSE), POSTs cut at 115 s (under the Apps proxy's 120 s, above MetaMCP's
 *   110 s tool timeout);
 * - logs say method, kind, ids, status and principal: never headers or bodies.
 * Who calls (design §3): no fragment, the app's service principal; `#identity=user`, the person whose request
 * this is, by the handle the router opened for it (contexts.ts) and only by it: no handle, an unknown or
 * expired one, the OpenAPI route (one session for every caller) or no request at all (background) is a 403
 * with the reason, never the app's token instead. An upstream `Mcp-Session-Id` belongs to the principal that
 * opened it; another principal's request on it is refused, never forwarded.
 */

export const GATEWAY_SECRET_HEADER = "x-metamcp-gateway-secret";
/** `app` (or absent) or `user`, from the server URL's fragment, set by the backend's wrapper. */
export const GATEWAY_IDENTITY_HEADER = "x-metamcp-databricks-identity";
/** Which backend route the MetaMCP request came in on (the backend module's ALS store), `background` when none. */
export const GATEWAY_ROUTE_HEADER = "x-metamcp-databricks-route";
/** Routes where one MetaMCP connection serves more than one person, or none: never on someone's token. */
const SHARED_ROUTES = new Set(["openapi", "background"]);
/** The most upstream session ids remembered with their principal (the oldest forgotten first). */
const MAX_BINDINGS = 10_000;
const REQUEST_HEADERS = ["content-type", "accept", "mcp-session-id", "mcp-protocol-version", "last-event-id"];
const RESPONSE_HEADERS = ["content-type", "mcp-session-id", "cache-control"];
/** What Streamable HTTP and SSE clients send (the SDK: POST messages, GET the stream, DELETE the session). */
const METHODS = new Set(["GET", "POST", "DELETE"]);
const POST_CAP_MS = 115_000;
/** MCP requests are small JSON; a bigger body is not one. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface GatewayLog {
  info(message: string): void;
  warn(message: string): void;
}

export interface ToolsGatewayOptions {
  /** The app's workspace (DATABRICKS_HOST), the only upstream: `https://<host>`. */
  workspaceOrigin: string;
  token: () => CurrentToken;
  /** The service principal's application id (DATABRICKS_CLIENT_ID), named in grant sentences. */
  principalId: string;
  log: GatewayLog;
  postTimeoutMs?: number;
  /**
   * False with METAMCP_DATABRICKS_APP_IDENTITY=off: nothing runs as the service principal, also servers
   * made before the setting was changed.
   */
  appIdentity?: boolean;
  /** The router's per-request on-behalf-of tokens (`#identity=user`); none: user mode is refused. */
  contexts?: ToolContexts;
}

export interface ToolsGateway {
  port: number;
  address: string;
  /** 32 random bytes, hex: handed to the backend on the fd-3 pipe, never in an environment. */
  secret: string;
  close(): Promise<void>;
}

const digest = (s: string) => createHash("sha256").update(s).digest();

function secretMatches(given: string | string[] | undefined, secret: string): boolean {
  if (typeof given !== "string" || given === "") return false;
  // Hash both, so the compare is constant-time whatever the given length.
  return timingSafeEqual(digest(given), digest(secret));
}

async function readBody(req: IncomingMessage): Promise<Buffer | "too-large"> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) return "too-large";
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The JSON-RPC method and id of a single request body (batches and non-JSON: undefined). */
function rpcOf(body: Buffer | undefined): { method?: string; id?: unknown } {
  if (!body?.length) return {};
  try {
    const parsed = JSON.parse(body.toString("utf8")) as unknown;
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return {};
    const p = parsed as { method?: unknown; id?: unknown };
    return { method: typeof p.method === "string" ? p.method : undefined, id: p.id };
  } catch {
    return {};
  }
}

const shown = (s: string) => JSON.stringify(maskSecrets(s.length > 200 ? `${s.slice(0, 200)}…` : s));

export async function startToolsGateway(o: ToolsGatewayOptions): Promise<ToolsGateway> {
  const secret = randomBytes(32).toString("hex");
  registerSecret(secret);
  const origin = new URL(o.workspaceOrigin).origin;
  const cap = o.postTimeoutMs ?? POST_CAP_MS;
  /** Upstream Mcp-Session-Id → the principal (`app` or an email) whose request opened it. */
  const bindings = new Map<string, string>();
  const bind = (sessionId: string, principal: string) => {
    if (bindings.has(sessionId)) return;
    bindings.set(sessionId, principal);
    if (bindings.size > MAX_BINDINGS) bindings.delete(bindings.keys().next().value as string);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const t0 = performance.now();
    const method = req.method ?? "GET";
    const raw = req.url ?? "";
    if (!secretMatches(req.headers[GATEWAY_SECRET_HEADER], secret)) {
      o.log.warn(`databricks-tools: refused ${method} ${shown(raw)} (no valid gateway secret)`);
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error_code: "UNAUTHENTICATED", message: "not for this caller" }));
      return;
    }
    if (!METHODS.has(method)) {
      o.log.warn(`databricks-tools: refused ${method} ${shown(raw)} (not an MCP method) for app`);
      res.writeHead(405, { "content-type": "application/json", allow: [...METHODS].join(", ") });
      res.end(JSON.stringify({ message: `${method} is not an MCP request (GET, POST or DELETE)` }));
      return;
    }
    let body: Buffer | undefined;
    if (method === "POST") {
      const read = await readBody(req);
      if (read === "too-large") {
        res.writeHead(413, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: REFUSALS.tooLarge(MAX_BODY_BYTES) }));
        return;
      }
      body = read;
    }
    const rpc = rpcOf(body);
    /** A refusal: for tools/call the tool's own error result (the agent reads it), else the status. */
    const refuse = (status: number, sentence: string, logged: string) => {
      o.log.warn(`databricks-tools: ${logged}`);
      if (rpc.method === "tools/call") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(toolErrorResult(rpc.id, sentence));
        return;
      }
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify({ message: sentence }));
    };

    const q = raw.indexOf("?");
    const pathPart = q < 0 ? raw : raw.slice(0, q);
    const search = q < 0 ? "" : raw.slice(q);
    const canonical = canonicalMcpPath(pathPart);
    if (!canonical.ok)
      return refuse(
        403,
        REFUSALS.path(canonical.reason),
        `refused ${method} ${shown(pathPart)} (${canonical.reason}) for app`,
      );
    const { kind, ids } = canonical;
    const what = `${method} ${kind} ${ids.join(".") || "-"}${rpc.method ? ` ${rpc.method}` : ""}`;
    const identity = String(req.headers[GATEWAY_IDENTITY_HEADER] ?? "app");
    let principal = "app";
    let bearer: string;
    if (identity === "user") {
      const route = String(req.headers[GATEWAY_ROUTE_HEADER] ?? "background");
      if (SHARED_ROUTES.has(route))
        return refuse(403, REFUSALS.userRoute, `refused ${what} (#identity=user on the ${route} route)`);
      const handle = req.headers[CONTEXT_HEADER];
      const context = o.contexts?.get(typeof handle === "string" ? handle : undefined);
      if (!context)
        return refuse(
          403,
          REFUSALS.noUserToken,
          `refused ${what} (#identity=user: ${handle ? "unknown or expired handle" : "no per-person token with this request"})`,
        );
      principal = context.email;
      bearer = context.token;
    } else if (identity !== "app") {
      return refuse(403, REFUSALS.identity(identity), `refused ${what} (unknown identity)`);
    } else {
      if (o.appIdentity === false)
        return refuse(403, REFUSALS.appIdentityOff, `refused ${what} (METAMCP_DATABRICKS_APP_IDENTITY=off)`);
      const token = o.token();
      if (!token.ok) return refuse(503, token.reason, `${what} → 503 (${token.reason})`);
      bearer = token.token;
    }
    const as = principal === "app" ? "as app" : `as ${principal}`;
    const sessionId = req.headers["mcp-session-id"];
    if (typeof sessionId === "string") {
      const owner = bindings.get(sessionId);
      if (owner !== undefined && owner !== principal)
        return refuse(
          403,
          REFUSALS.otherSession,
          `refused ${what} ${as} (the upstream session was opened by another principal)`,
        );
    }

    const headers = new Headers();
    for (const name of REQUEST_HEADERS) {
      const v = req.headers[name];
      if (typeof v === "string") headers.set(name, v);
    }
    headers.set("authorization", `Bearer ${bearer}`);
    const abort = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) abort.abort();
    });
    const signals = method === "POST" ? [abort.signal, AbortSignal.timeout(cap)] : [abort.signal];
    let upstream: Response;
    try {
      upstream = await fetch(`${origin}${canonical.path}${search}`, {
        method,
        headers,
        body: body?.length ? body : undefined,
        redirect: "manual",
        signal: AbortSignal.any(signals),
      });
    } catch (err) {
      if (abort.signal.aborted) return;
      const timedOut = (err as Error).name === "TimeoutError";
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      return timedOut
        ? refuse(504, REFUSALS.timeout(cap / 1000), `${what} → 504 (no answer within ${cap / 1000} s) ${as}`)
        : refuse(502, REFUSALS.unreachable(origin, cause), `${what} → 502 (${cause}) ${as}`);
    }
    const ms = () => Math.round(performance.now() - t0);
    if (upstream.status >= 300 && upstream.status < 400) {
      await upstream.body?.cancel();
      return refuse(
        502,
        REFUSALS.redirect(upstream.status),
        `${what} → refused redirect ${upstream.status} ${as}`,
      );
    }
    if ([400, 401, 403, 404].includes(upstream.status)) {
      const text = await upstream.text().catch(() => "");
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: explained from the text
      }
      const sentence = explain({
        status: upstream.status,
        body: parsed,
        kind,
        ids,
        principalId: o.principalId,
        caller: principal === "app" ? undefined : principal,
      });
      if (sentence)
        return refuse(
          upstream.status,
          sentence,
          `${what} → ${upstream.status} ${as}: ${maskSecrets(sentence)}`,
        );
      res.writeHead(upstream.status, { "content-type": "application/json" });
      res.end(text);
      return;
    }
    const out: Record<string, string> = {};
    for (const name of RESPONSE_HEADERS) {
      const v = upstream.headers.get(name);
      if (v !== null) out[name] = v;
    }
    const opened = upstream.headers.get("mcp-session-id");
    if (opened && upstream.ok) bind(opened, principal);
    if (method === "DELETE" && typeof sessionId === "string" && upstream.ok) bindings.delete(sessionId);
    res.writeHead(upstream.status, out);
    res.flushHeaders();
    o.log.info(`databricks-tools: ${what} → ${upstream.status} ${as} in ${ms()} ms`);
    if (!upstream.body) {
      res.end();
      return;
    }
    const stream = Readable.fromWeb(upstream.body as WebReadableStream<Uint8Array>);
    stream.on("error", () => res.destroy());
    stream.pipe(res);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      o.log.warn(`databricks-tools: internal error: ${maskSecrets(String((err as Error)?.message ?? err))}`);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ message: "internal error in the tools gateway" }));
      } else res.destroy();
    });
  });
  // Long GET streams (SSE) are the norm here: no Node-side request timeout.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address() as AddressInfo;
  return {
    port: addr.port,
    address: addr.address,
    secret,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
