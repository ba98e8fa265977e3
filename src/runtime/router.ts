import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { createProxyServer } from "http-proxy-3";
import type { AuditObserver } from "./audit-observer.js";
import type { AuditFilters, AuditRecord } from "./audit-query.js";
import { answerAuditRoute, isAuditRoute } from "./audit-route.js";
import { CONTEXT_HEADER, type ToolContexts } from "./databricks-tools/contexts.js";
import {
  createIdentitySignIn,
  IDENTITY_SECRET_HEADER,
  type IdentitySignIn,
  stampIdentitySecret,
} from "./identity-signin.js";
import {
  forbiddenTrpcAnswer,
  isLiveLogsProcedure,
  isManagerIdentity,
  type Managers,
  trpcProcedures,
} from "./live-logs-guard.js";
import { createPeerTrust, dropIdentityHeaders, normalizeAddress } from "./proxy-trust.js";
import { IN_FLIGHT_MESSAGE, type SessionContinuity, sessionCredentialHeaders } from "./session-continuity.js";
import {
  DEFAULT_MAX_SESSIONS,
  DEFAULT_SESSION_IDLE_MS,
  isSessionListing,
  namedSessionId,
  principalOf,
  type SessionRoute,
  SessionTable,
  sessionIdFromEndpointEvent,
  sessionRouteOf,
  type TrackedSession,
  withoutSessionListings,
} from "./session-guard.js";
import { answerSignupOff, isEmailSignUp } from "./signup-guard.js";

/**
 * The one listener on DATABRICKS_APP_PORT. MetaMCP's API and MCP paths go straight to the backend
 * (no Next rewrite in between: Next adds a 120 s proxy timeout and buffers nothing we need), the
 * rest to the Next frontend. Streams (SSE, streamable HTTP) pass through unbuffered.
 */
export const BACKEND_PREFIXES = [
  "/metamcp/",
  "/mcp-proxy/",
  "/api/auth/",
  "/trpc/",
  "/oauth/",
  "/.well-known/",
];
const BACKEND_EXACT = new Set(["/health", "/metamcp", "/mcp-proxy"]);

/**
 * `/register` is two things upstream: MetaMCP's middleware sends a browser's GET to the sign-up page
 * (`/<locale>/register`) before Next's rewrite applies, and OAuth dynamic client registration POSTs go to
 * the backend. So only a GET or HEAD of it is the frontend's.
 */
export function routeFor(url: string, method = "GET"): "backend" | "frontend" {
  const pathname = url.split("?")[0] ?? "/";
  if (pathname === "/register") return method === "GET" || method === "HEAD" ? "frontend" : "backend";
  if (BACKEND_EXACT.has(pathname)) return "backend";
  return BACKEND_PREFIXES.some((p) => pathname.startsWith(p)) ? "backend" : "frontend";
}

/** `/mcp` (and `/mcp/`) as the default endpoint's streamable HTTP path, when there is one. */
export function defaultEndpointPath(url: string, endpoint: string | undefined): string {
  if (!endpoint) return url;
  const q = url.indexOf("?");
  const pathname = q < 0 ? url : url.slice(0, q);
  if (pathname !== "/mcp" && pathname !== "/mcp/") return url;
  return `/metamcp/${encodeURIComponent(endpoint)}/mcp${q < 0 ? "" : url.slice(q)}`;
}

/** Next rewrites `/trpc/*` to the backend's `/trpc/frontend/*` and `/register` to `/api/auth/register`. */
export function backendPath(url: string): string {
  if (url.startsWith("/trpc/")) return `/trpc/frontend/${url.slice("/trpc/".length)}`;
  if (url === "/register" || url.startsWith("/register?"))
    return `/api/auth/register${url.slice("/register".length)}`;
  return url;
}

/**
 * MetaMCP's own credentials in `Authorization`: its API keys (`sk_mt_…`, api-keys.repo.ts) and its OAuth
 * tokens (`mcp_token_…`, api-key-oauth.middleware.ts). Anything else there is the caller's Databricks
 * token, which the Apps proxy may or may not forward.
 */
export function isMetamcpCredential(authorization: string | undefined): boolean {
  return /^Bearer\s+(sk_mt_|mcp_token_)\S+$/.test(authorization ?? "");
}

/**
 * What MetaMCP must not see of the Apps proxy's credentials. MetaMCP reads `X-API-Key` first, then
 * `Authorization: Bearer`, then `?api_key=`: a Databricks token left in `Authorization` would be validated
 * as an API key (401 invalid_api_key, and counted by its auth rate limiter) whenever the client sent its key
 * as `?api_key=`, and it would leak the user's workspace token into MetaMCP. So it is dropped, as is the
 * user-authorization token (`X-Forwarded-Access-Token`), which MetaMCP never uses.
 */
export function dropDatabricksCredentials(headers: IncomingHttpHeaders): void {
  if (headers.authorization !== undefined && !isMetamcpCredential(headers.authorization))
    delete headers.authorization;
  delete headers["x-forwarded-access-token"];
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]", "0.0.0.0", "[::]"]);

/**
 * The safety net for redirects: a `Location` pointing at one of our internal listeners (the Next or
 * Express port, or the router's own, on a loopback or any-address host) becomes a path on the public
 * origin; any other Location is left alone (external sites, the public URL itself).
 */
export function publicLocation(
  location: string,
  internalPorts: readonly number[],
  publicOrigin: string | undefined,
): string {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return location; // relative: resolved by the browser against the public origin
  }
  if (publicOrigin && url.origin === new URL(publicOrigin).origin) return location;
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  if (!LOOPBACK_HOSTS.has(url.hostname) || !internalPorts.includes(port)) return location;
  const path = `${url.pathname}${url.search}${url.hash}`;
  return publicOrigin ? `${publicOrigin.replace(/\/+$/, "")}${path}` : path;
}

/** Set-Cookie of a session the router opened for a request, added to that request's answer. */
const identityCookies = new WeakMap<IncomingMessage, string[]>();

function addIdentityCookies(proxyRes: IncomingMessage, req: IncomingMessage): void {
  const extra = identityCookies.get(req);
  if (!extra?.length) return;
  const own = proxyRes.headers["set-cookie"] ?? [];
  // The app's own cookies come last: if it set a session cookie itself, that one is the newer.
  proxyRes.headers["set-cookie"] = [...extra, ...own];
}

/** Signs the proxy's identity in to MetaMCP when the page request needs it, then forwards (or redirects). */
async function forwardSignedIn(
  identity: IdentitySignIn,
  req: IncomingMessage,
  res: ServerResponse,
  url: string,
  forward: () => void,
): Promise<void> {
  const q = url.indexOf("?");
  const pathname = q < 0 ? url : url.slice(0, q);
  const result = await identity.prepare(req, pathname, q < 0 ? "" : url.slice(q));
  if (result?.redirect) {
    res.writeHead(302, {
      location: result.redirect,
      "set-cookie": result.setCookies,
      "cache-control": "no-store",
    });
    res.end();
    return;
  }
  if (result?.setCookies.length) identityCookies.set(req, result.setCookies);
  if (!res.destroyed) forward();
}

export interface Router {
  server: Server;
  ready: boolean;
  close(graceMs: number): Promise<void>;
  /** The MCP sessions the router tracks (who opened each, where): docs/threats.md. */
  sessions: SessionTable;
}

export interface RouterOptions {
  backendPort: number;
  frontendPort: number;
  /** The app's public origin (APP_URL), once known; redirects to internal listeners are rewritten onto it. */
  publicUrl?: () => string | undefined;
  /**
   * Why the app cannot serve right now (no database connection can be opened), or undefined. Asked for the
   * health paths only: upstream's `/metamcp/health` answers 200 without touching the database.
   */
  healthProblem?: () => Promise<string | undefined>;
  /** The per-start secret the backend child got as METAMCP_IDENTITY_SECRET (docs/identity.md). */
  identitySecret?: string;
  /** Where identity sign-in warnings go (a refused sign-in, an unreachable backend). */
  warn?: (message: string) => void;
  /** Routine events worth a log line (a session ended for idleness). */
  info?: (message: string) => void;
  /**
   * Peers whose identity headers count although they are this host's own addresses (the local stand-in
   * proxy; METAMCP_TRUSTED_PROXY_ADDRESSES). Empty on Databricks: the Apps proxy is not on the app's host.
   */
  trustedProxyAddresses?: readonly string[];
  /** This host's addresses (tests); default: the OS's interfaces. */
  ownAddresses?: () => readonly string[];
  /** A session with no request for this long is ended in MetaMCP (default 30 min). */
  sessionIdleMs?: number;
  /** The most sessions tracked at once (default 10,000). */
  maxSessions?: number;
  /** The most sessions of one principal (default a tenth of maxSessions). */
  maxSessionsPerPrincipal?: number;
  /**
   * The endpoint `/mcp` stands for (METAMCP_DEFAULT_ENDPOINT): Databricks' AI Playground and agent tooling
   * call `<app url>/mcp` on apps whose name starts with `mcp-` (docs: generative-ai/mcp/custom-mcp).
   */
  defaultEndpoint?: string;
  /** The app's managers (METAMCP_APP_MANAGERS): the only people who may read MetaMCP's live logs. */
  managers?: Managers;
  /** METAMCP_EMAIL_SIGNUP: `off` (the runtime's default) refuses better-auth's email sign-up route. */
  emailSignup?: "on" | "off";
  /** METAMCP_AUDIT: watches MCP requests and answers as they pass, for the audit table (docs/audit.md). */
  audit?: AuditObserver;
  /** Reads the audit for `GET /metamcp/_databricks/audit`, answered to the app's managers only (audit-route.ts). */
  auditRead?: (filters: AuditFilters) => Promise<AuditRecord[]>;
  /** Streamable HTTP sessions that survive MetaMCP restarts and move between instances (docs/scaling.md). */
  continuity?: SessionContinuity;
  /** Per-request on-behalf-of tokens for per-person Databricks servers (docs/databricks-tools.md). */
  toolContexts?: ToolContexts;
}

/** The health paths (upstream's backend route and the one Next rewrites to it). */
const HEALTH_PATHS = new Set(["/metamcp/health", "/health"]);

/** How upstream answers a session it does not have (streamable-http.ts, sse.ts): the router answers the same. */
function answerUnknownSession(
  res: ServerResponse,
  method: string | undefined,
  route: SessionRoute | undefined,
  sessionId: string,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (route?.kind === "message" || method === "GET") {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    res.end("Session not found");
    return;
  }
  res.writeHead(404, { "content-type": "application/json; charset=utf-8" });
  res.end(
    JSON.stringify({
      error: "Session not found",
      message: `Transport not found for sessionId ${sessionId}`,
      timestamp: new Date().toISOString(),
    }),
  );
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);
/** Answers that list session ids are JSON and small; anything larger is passed on unread. */
const MAX_REWRITTEN_BODY = 1024 * 1024;

interface Opening {
  route: SessionRoute;
  principal: string;
  close: { path: string; headers: Record<string, string> };
}

interface Guarded {
  session: TrackedSession;
  route: SessionRoute | undefined;
  /** Continuity: answers the request's calls clearly if MetaMCP dies while streaming their answer. */
  cut?: (proxyRes: IncomingMessage, res: ServerResponse) => void;
}

const HOP_BY_HOP_ALWAYS = ["keep-alive", "proxy-connection", "te", "trailer", "proxy-authorization"];

/** The hop-by-hop headers present in `headers`: the fixed ones, and every header its Connection names. */
function hopByHopOf(headers: IncomingHttpHeaders): string[] {
  const names = HOP_BY_HOP_ALWAYS.filter((n) => headers[n] !== undefined);
  const connection = headers.connection;
  if (connection)
    for (const token of connection.split(",")) {
      const name = token.trim().toLowerCase();
      if (
        name &&
        name !== "close" &&
        name !== "keep-alive" &&
        name !== "upgrade" &&
        headers[name] !== undefined
      )
        names.push(name);
    }
  return names;
}

/** An answer's headers as passed on (hop-by-hop ones dropped). */
function passedOnHeaders(proxyRes: IncomingMessage): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(proxyRes.headers))
    if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
  return headers;
}

export function createRouter(options: RouterOptions): Router {
  // Keep-alive to both children: a new TCP connection per proxied request costs more than the routing
  // (without an `agent`, http-proxy-3 sends `Connection: close` and opens one per request).
  // noDelay: small SSE writes (one MCP answer each) must not wait for Nagle to batch them.
  // timeout 4 s: how long a FREE socket stays pooled (Node's Agent destroys only free sockets on it; a busy
  // one, e.g. an idle SSE stream, just gets a 'timeout' event nobody acts on). It must be under the children's
  // 5 s keep-alive (Node's default, MetaMCP's Express and Next): reusing a socket the child is closing is an
  // ECONNRESET, i.e. a 502. Without it Node keeps free sockets forever: it applies the child's
  // `Keep-Alive: timeout=5` hint only to lower a timeout it already has.
  const agent = new Agent({
    keepAlive: true,
    noDelay: true,
    timeout: 4000,
    maxSockets: Number.POSITIVE_INFINITY,
    maxFreeSockets: 64,
  });
  // xfwd false: the Apps proxy already set X-Forwarded-Host/-Proto/-For for the public side; ours would
  // append a loopback hop and our port to them. proxyTimeout 0 (none): MCP's SSE streams stay open and idle
  // for as long as a session lives, a timeout would cut them. changeOrigin stays off so the children see the
  // public Host. selfHandleResponse stays off (but for requests naming a session, below): the library pipes the
  // answer as it comes (SSE unbuffered), after our `proxyRes` handler has rewritten Location. The library
  // aborts the upstream request when the client goes away (res 'close' before finishing) and drops
  // hop-by-hop headers of the answer.
  const proxy = createProxyServer({ xfwd: false, ws: true, proxyTimeout: 0, agent });
  // URL objects once: the library parses a string target on every request.
  const backendTarget = new URL(`http://127.0.0.1:${options.backendPort}`);
  const frontendTarget = new URL(`http://127.0.0.1:${options.frontendPort}`);
  const internalPorts = () => {
    const listening = router.server.address();
    const own = listening && typeof listening === "object" ? [listening.port] : [];
    return [options.backendPort, options.frontendPort, ...own];
  };
  const peers = createPeerTrust({
    trustedProxyAddresses: options.trustedProxyAddresses,
    ownAddresses: options.ownAddresses,
  });
  const warnedPeers = new Set<string>();
  const refuseIdentityFrom = (req: IncomingMessage) => {
    if (peers.trusts(req.socket.remoteAddress) || !dropIdentityHeaders(req.headers)) return;
    const peer = normalizeAddress(req.socket.remoteAddress);
    if (warnedPeers.size < 16 && !warnedPeers.has(peer)) {
      warnedPeers.add(peer);
      options.warn?.(
        `ignored identity headers (X-Forwarded-Email & co.) from ${peer || "an unknown address"}: it is an address of this host, and only the Apps proxy may say who a caller is (docs/identity.md)`,
      );
    }
  };

  /**
   * A person's on-behalf-of token stays here: MetaMCP gets only an opaque handle for it, good for this request
   * (and a grace after its answer), which the tools gateway swaps back (docs/databricks-tools.md). A client's
   * own copy of the handle header is never passed on; without a trusted identity and a forwarded token (after
   * refuseIdentityFrom) there is no handle, so a per-person server is refused, never run as the app.
   */
  const openToolContext = (req: IncomingMessage, res: ServerResponse) => {
    delete req.headers[CONTEXT_HEADER];
    const contexts = options.toolContexts;
    const token = req.headers["x-forwarded-access-token"];
    const email = req.headers["x-forwarded-email"];
    if (!contexts || typeof token !== "string" || !token || typeof email !== "string" || !email) return;
    const handle = contexts.open({ token, email });
    req.headers[CONTEXT_HEADER] = handle;
    res.once("close", () => contexts.release(handle));
  };

  const endSession = (s: TrackedSession, why: "idle" | "evicted" | "elsewhere") => {
    for (const stream of s.streams ?? []) stream.destroy();
    s.streams?.clear();
    if (s.close) {
      const headers: Record<string, string> = { ...s.close.headers, "mcp-session-id": s.backendId ?? s.id };
      delete headers[IDENTITY_SECRET_HEADER];
      stampIdentitySecret(headers, options.identitySecret);
      const r = httpRequest(
        {
          host: "127.0.0.1",
          port: options.backendPort,
          method: "DELETE",
          path: s.close.path,
          headers,
          agent,
        },
        (answer) => answer.resume(),
      );
      r.on("error", () => {});
      r.end();
    }
    if (s.transport === "streamable" && why !== "elsewhere") options.continuity?.ended(s.id, why);
    options.info?.(
      why === "idle"
        ? `ended an MCP session idle for over ${Math.round((options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS) / 1000)} s (${s.scope})`
        : why === "elsewhere"
          ? `ended this instance's copy of an MCP session its owner ended on another instance (${s.scope})`
          : `ended the least recently used MCP session (${s.scope}): more than ${options.maxSessions ?? DEFAULT_MAX_SESSIONS} open`,
    );
  };
  const sessions = new SessionTable({
    idleMs: options.sessionIdleMs ?? DEFAULT_SESSION_IDLE_MS,
    maxSessions: options.maxSessions ?? DEFAULT_MAX_SESSIONS,
    maxPerPrincipal: options.maxSessionsPerPrincipal,
    end: endSession,
  });
  sessions.start();
  const openings = new WeakMap<IncomingMessage, Opening>();
  const guarded = new WeakMap<IncomingMessage, Guarded>();
  /** Streamable openings whose answer waits until continuity recorded the session (session-continuity.ts). */
  const recordedOpenings = new WeakSet<IncomingMessage>();

  const trackOpening = (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
    const o = openings.get(req);
    if (!o || (proxyRes.statusCode ?? 500) >= 300) return;
    if (o.route.kind === "mcp") {
      const id = proxyRes.headers["mcp-session-id"];
      if (typeof id === "string" && id !== "")
        sessions.add({
          id,
          scope: o.route.scope,
          principal: o.principal,
          transport: "streamable",
          close: o.close,
          generation: options.continuity?.generation(),
        });
      return;
    }
    // SSE: the id is in the stream's first event. This listener is added before the library pipes the answer,
    // so the session is in the table before the client can read its id.
    options.audit?.sseStream(proxyRes, res);
    let seen = "";
    const onData = (chunk: Buffer) => {
      seen += chunk.toString("utf8");
      const id = sessionIdFromEndpointEvent(seen);
      if (id === undefined && seen.length < 8192) return;
      proxyRes.off("data", onData);
      if (id === undefined) return;
      const s = sessions.add({ id, scope: o.route.scope, principal: o.principal, transport: "sse" });
      s.inflight++; // the stream itself: never idle while the client holds it
      sessions.holdStream(s, res);
      res.once("close", () => sessions.forget(id));
    };
    proxyRes.on("data", onData);
    // MetaMCP's process died under the stream: the client's ends too, so it knows to connect again (an SSE
    // session lives in that process only: docs/scaling.md).
    proxyRes.once("close", () => {
      if (!proxyRes.complete) res.destroy();
    });
  };

  /** The answer to a request naming one of the caller's sessions: passed on, minus other sessions' ids. */
  const relayGuarded = (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse, g: Guarded) => {
    const status = proxyRes.statusCode ?? 502;
    if (req.method === "DELETE" && g.session.transport === "streamable")
      options.continuity?.ended(g.session.id, "deleted");
    if (status === 404) {
      // The backend no longer has it (a restart, its own cleanup): gone for us too, and its 404 lists the others.
      // With continuity the stored session stays: the next request re-opens it.
      sessions.forget(g.session.id);
      proxyRes.resume();
      answerUnknownSession(res, req.method, g.route, g.session.id);
      return;
    }
    const headers = passedOnHeaders(proxyRes);
    const deleted = req.method === "DELETE" && status < 300;
    if (deleted) sessions.forget(g.session.id);
    const json = String(proxyRes.headers["content-type"] ?? "").includes("json");
    if (!(json && (deleted || req.method === "DELETE" || status >= 400))) {
      res.writeHead(status, proxyRes.statusMessage, headers);
      proxyRes.pipe(res);
      g.cut?.(proxyRes, res);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    proxyRes.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_REWRITTEN_BODY) chunks.push(c);
    });
    proxyRes.on("end", () => {
      if (size > MAX_REWRITTEN_BODY) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end("MetaMCP's answer was too large to pass on");
        return;
      }
      const text = Buffer.concat(chunks).toString("utf8");
      const body = Buffer.from(withoutSessionListings(text) ?? text);
      delete headers["content-length"];
      res.writeHead(status, proxyRes.statusMessage, { ...headers, "content-length": String(body.length) });
      res.end(body);
    });
  };

  /** An opening's answer, held until the session is recorded: the client's next request may go anywhere. */
  const relayRecordedOpening = (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
    proxyRes.pause();
    trackOpening(proxyRes, req, res);
    const o = openings.get(req);
    const id = proxyRes.headers["mcp-session-id"];
    const recorded =
      o && (proxyRes.statusCode ?? 500) < 300 && typeof id === "string" && id !== ""
        ? options.continuity!.opened(req, id, o.principal, o.route.scope)
        : Promise.resolve();
    void recorded.then(() => {
      if (res.destroyed) return proxyRes.destroy();
      res.writeHead(proxyRes.statusCode ?? 502, proxyRes.statusMessage, passedOnHeaders(proxyRes));
      proxyRes.pipe(res);
    });
  };

  /** A request of one of the caller's sessions, to MetaMCP under the id MetaMCP knows it by. */
  const forwardInSession = (
    req: IncomingMessage,
    res: ServerResponse,
    session: TrackedSession,
    route: SessionRoute | undefined,
  ) => {
    res.once("close", sessions.begin(session));
    if (req.method === "GET") {
      sessions.holdStream(session, res);
    }
    const continuity = options.continuity;
    const cut = continuity && session.transport === "streamable" ? continuity.watchCall(req) : undefined;
    guarded.set(req, { session, route, cut });
    if (session.backendId) req.headers["mcp-session-id"] = session.backendId;
    if (continuity && session.transport === "streamable")
      continuity.used(session, () => {
        if (sessions.owned(session.id, session.principal, session.scope) !== session) return;
        sessions.forget(session.id);
        endSession(session, "elsewhere");
      });
    proxy.web(req, res, { target: backendTarget, selfHandleResponse: true });
  };

  // Hop-by-hop headers (RFC 9110 7.6.1) stay on their hop: http-proxy-3 passes most of them on both ways.
  // The client's `Connection: close` or `Keep-Alive` must not reach our pooled connection to the child, and
  // the child's `Keep-Alive: timeout=5` must not tell the front proxy that our idle limit is 5 s (it is 65 s).
  proxy.on("proxyReq", (proxyReq, req) => {
    for (const name of hopByHopOf(req.headers)) proxyReq.removeHeader(name);
  });
  proxy.on("proxyRes", (proxyRes, req, res) => {
    for (const name of hopByHopOf(proxyRes.headers)) if (name !== "connection") delete proxyRes.headers[name];
    const location = proxyRes.headers.location;
    if (location)
      proxyRes.headers.location = publicLocation(location, internalPorts(), options.publicUrl?.());
    const g = guarded.get(req);
    // A re-opened session: the client (and the audit) keep the id the client was given; MetaMCP's stays here.
    if (g?.session.backendId && proxyRes.headers["mcp-session-id"] !== undefined)
      proxyRes.headers["mcp-session-id"] = g.session.id;
    addIdentityCookies(proxyRes, req);
    options.audit?.response(req, proxyRes);
    if (g) relayGuarded(proxyRes, req, res as ServerResponse, g);
    else if (recordedOpenings.has(req)) relayRecordedOpening(proxyRes, req, res as ServerResponse);
    else trackOpening(proxyRes, req, res as ServerResponse);
    // A child that dies mid-answer: the library would leave the client's answer open for ever. Cut it, so
    // the client (and the audit: `cut`) knows it ended. (A session's calls get continuity's clear answer.)
    if (!g)
      proxyRes.once("close", () => {
        if (!proxyRes.complete) (res as ServerResponse).destroy();
      });
  });
  const identity = options.identitySecret
    ? createIdentitySignIn({ backendPort: options.backendPort, warn: options.warn })
    : undefined;
  const sockets = new Set<Socket>();
  const router: Router = {
    // Idle keep-alive connections from the front proxy stay open longer than a proxy keeps them idle
    // (60 s is the usual front-proxy idle timeout): the side that closes first must be the proxy, or a
    // request it sends on a socket we are closing fails as a 502.
    server: createServer({ keepAliveTimeout: 65_000, headersTimeout: 66_000 }),
    ready: false,
    sessions,
    close: async (graceMs) => {
      sessions.stop();
      const closed = new Promise<void>((resolve) => router.server.close(() => resolve()));
      router.server.closeIdleConnections();
      const timer = setTimeout(() => {
        for (const s of sockets) s.destroy();
      }, graceMs);
      await closed;
      clearTimeout(timer);
      proxy.close();
      agent.destroy();
    },
  };
  proxy.on("error", (err, req, res) => {
    const r = res as ServerResponse;
    if (typeof r.writeHead === "function" && !r.headersSent) {
      r.writeHead(502, { "content-type": "text/plain" });
      r.end(
        options.continuity && guarded.get(req)?.session.transport === "streamable"
          ? `${IN_FLIGHT_MESSAGE} (${err.message})`
          : `MetaMCP is not answering: ${err.message}`,
      );
    } else (res as Socket).destroy?.();
  });
  router.server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });

  /** The backend side: sessions are the caller's own or unknown; listings are not there. */
  const forwardToBackend = (req: IncomingMessage, res: ServerResponse, pathname: string, search: string) => {
    const procedures = req.url?.startsWith("/trpc/") ? trpcProcedures((req.url ?? "").split("?")[0]!) : [];
    if (
      procedures.some(isLiveLogsProcedure) &&
      !isManagerIdentity(req.headers, options.managers ?? { emails: [], principals: [] })
    ) {
      res.writeHead(403, { "content-type": "application/json" });
      res.end(forbiddenTrpcAnswer(procedures, /(?:^|&)batch=1(?:&|$)/.test(search)));
      return;
    }
    if (isSessionListing(pathname)) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end("Not Found");
      return;
    }
    const route = sessionRouteOf(pathname);
    const query = search ? new URLSearchParams(search) : undefined;
    const sessionId = namedSessionId(req.headers, route, query);
    if (options.audit && req.method === "POST" && (route?.kind === "mcp" || route?.kind === "message"))
      options.audit.request(
        req,
        res,
        route.scope,
        route.kind === "mcp" ? "streamable" : "message",
        sessionId,
      );
    if (sessionId !== undefined) {
      const principal = principalOf(req.headers, query);
      const session = sessions.owned(sessionId, principal, route?.scope);
      const continuity = options.continuity;
      if (continuity && route?.kind === "mcp" && continuity.needsReopen(session)) {
        // Held (not read) until MetaMCP has the session again: then forwarded as it came.
        req.pause();
        void continuity.reopen(req, sessionId, principal, route.scope, sessions).then((r) => {
          if (r.kind === "session") return forwardInSession(req, res, r.session, route);
          if (r.kind === "unknown") {
            options.audit?.refused(req, 404);
            return answerUnknownSession(res, req.method, route, sessionId);
          }
          options.audit?.refused(req, r.status);
          res.writeHead(r.status, { "content-type": r.contentType });
          res.end(r.body);
        });
        return;
      }
      if (!session) {
        options.audit?.refused(req, 404);
        return answerUnknownSession(res, req.method, route, sessionId);
      }
      forwardInSession(req, res, session, route);
      return;
    }
    const opens =
      route !== undefined &&
      ((route.kind === "mcp" && req.method === "POST") ||
        ((route.kind === "sse" || route.kind === "stdio") && req.method === "GET"));
    if (opens) {
      openings.set(req, {
        route,
        principal: principalOf(req.headers, query),
        close: { path: req.url ?? pathname, headers: sessionCredentialHeaders(req.headers) },
      });
      if (options.continuity && route.kind === "mcp") {
        options.continuity.watchOpening(req);
        recordedOpenings.add(req);
        proxy.web(req, res, { target: backendTarget, selfHandleResponse: true });
        return;
      }
    }
    proxy.web(req, res, { target: backendTarget });
  };

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const original = defaultEndpointPath(req.url ?? "/", options.defaultEndpoint);
    const q = original.indexOf("?");
    const pathname = q < 0 ? original : original.slice(0, q);
    // Before routing: whichever side a spelling would reach, it is not passed on.
    if (options.emailSignup === "off" && isEmailSignUp(pathname)) return answerSignupOff(res);
    const side = routeFor(original, req.method);
    req.url = side === "backend" ? backendPath(original) : original;
    refuseIdentityFrom(req);
    if (side === "backend") openToolContext(req, res);
    else delete req.headers[CONTEXT_HEADER];
    dropDatabricksCredentials(req.headers);
    if (isAuditRoute(pathname)) {
      answerAuditRoute(req, res, q < 0 ? "" : original.slice(q + 1), {
        managers: options.managers ?? { emails: [], principals: [] },
        read: options.auditRead,
      });
      return;
    }
    stampIdentitySecret(req.headers, options.identitySecret);
    if (side === "backend") {
      if (identity && req.method === "POST" && pathname === "/api/auth/sign-out")
        identity.forget(typeof req.headers.cookie === "string" ? req.headers.cookie : undefined);
      forwardToBackend(req, res, pathname, q < 0 ? "" : original.slice(q + 1));
      return;
    }
    if (identity)
      void forwardSignedIn(identity, req, res, original, () =>
        proxy.web(req, res, { target: frontendTarget }),
      );
    else proxy.web(req, res, { target: frontendTarget });
  };
  router.server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (!router.ready) {
      res.writeHead(503, { "content-type": "text/plain", "retry-after": "2" });
      res.end("MetaMCP is starting");
      return;
    }
    const pathname = (req.url ?? "/").split("?")[0] ?? "/";
    if (options.healthProblem && HEALTH_PATHS.has(pathname)) {
      void options.healthProblem().then(
        (problem) => {
          if (!problem) return forward(req, res);
          res.writeHead(503, { "content-type": "application/json", "retry-after": "5" });
          res.end(JSON.stringify({ status: "unhealthy", reason: problem }));
        },
        () => forward(req, res),
      );
      return;
    }
    forward(req, res);
  });
  router.server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const original = defaultEndpointPath(req.url ?? "/", options.defaultEndpoint);
    const side = routeFor(original);
    req.url = side === "backend" ? backendPath(original) : original;
    refuseIdentityFrom(req);
    delete req.headers[CONTEXT_HEADER];
    dropDatabricksCredentials(req.headers);
    stampIdentitySecret(req.headers, options.identitySecret);
    proxy.ws(req, socket, head, { target: side === "backend" ? backendTarget : frontendTarget });
  });
  return router;
}
