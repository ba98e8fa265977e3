import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { createProxyServer } from "http-proxy-3";

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
const BACKEND_EXACT = new Set(["/health", "/register", "/metamcp", "/mcp-proxy"]);

export function routeFor(url: string): "backend" | "frontend" {
  const pathname = url.split("?")[0] ?? "/";
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

export interface Router {
  server: Server;
  ready: boolean;
  close(graceMs: number): Promise<void>;
}

export function createRouter(options: { backendPort: number; frontendPort: number }): Router {
  const proxy = createProxyServer({ xfwd: false, ws: true, proxyTimeout: 0 });
  const sockets = new Set<Socket>();
  const router: Router = {
    server: createServer(),
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
    },
  };
  const target = (url: string) => {
    const side = routeFor(url);
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
  router.server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    if (!router.ready) {
      res.writeHead(503, { "content-type": "text/plain", "retry-after": "2" });
      res.end("MetaMCP is starting");
      return;
    }
    const t = target(req.url ?? "/");
    req.url = t.path;
    proxy.web(req, res, { target: t.target });
  });
  router.server.on("upgrade", (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const t = target(req.url ?? "/");
    req.url = t.path;
    proxy.ws(req, socket, head, { target: t.target });
  });
  return router;
}
