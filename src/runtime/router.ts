import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";
import { createProxyServer } from "http-proxy-3";
import { createIdentitySignIn, type IdentitySignIn, stampIdentitySecret } from "./identity-signin.js";

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
}

/** The health paths (upstream's backend route and the one Next rewrites to it). */
const HEALTH_PATHS = new Set(["/metamcp/health", "/health"]);

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
  // public Host. selfHandleResponse stays off: the library pipes the answer as it comes (SSE unbuffered), after
  // our `proxyRes` handler has rewritten Location. The library aborts the upstream request when the client
  // goes away (res 'close' before finishing) and drops hop-by-hop headers of the answer.
  const proxy = createProxyServer({ xfwd: false, ws: true, proxyTimeout: 0, agent });
  const internalPorts = () => {
    const listening = router.server.address();
    const own = listening && typeof listening === "object" ? [listening.port] : [];
    return [options.backendPort, options.frontendPort, ...own];
  };
  proxy.on("proxyRes", (proxyRes, req) => {
    const location = proxyRes.headers.location;
    if (location)
      proxyRes.headers.location = publicLocation(location, internalPorts(), options.publicUrl?.());
    addIdentityCookies(proxyRes, req);
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
    close: async (graceMs) => {
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
  const target = (url: string, method?: string) => {
    const side = routeFor(url, method);
    return side === "backend"
      ? { target: `http://127.0.0.1:${options.backendPort}`, path: backendPath(url) }
      : { target: `http://127.0.0.1:${options.frontendPort}`, path: url };
  };
  proxy.on("error", (err, _req, res) => {
    const r = res as ServerResponse;
    if (typeof r.writeHead === "function" && !r.headersSent) {
      r.writeHead(502, { "content-type": "text/plain" });
      r.end(`MetaMCP is not answering: ${err.message}`);
    } else (res as Socket).destroy?.();
  });
  router.server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const original = req.url ?? "/";
    const t = target(original, req.method);
    req.url = t.path;
    dropDatabricksCredentials(req.headers);
    stampIdentitySecret(req.headers, options.identitySecret);
    if (identity && req.method === "POST" && original.split("?")[0] === "/api/auth/sign-out")
      identity.forget(typeof req.headers.cookie === "string" ? req.headers.cookie : undefined);
    if (identity && routeFor(original, req.method) === "frontend")
      void forwardSignedIn(identity, req, res, original, () => proxy.web(req, res, { target: t.target }));
    else proxy.web(req, res, { target: t.target });
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
    const t = target(req.url ?? "/");
    req.url = t.path;
    dropDatabricksCredentials(req.headers);
    stampIdentitySecret(req.headers, options.identitySecret);
    proxy.ws(req, socket, head, { target: t.target });
  });
  return router;
}
