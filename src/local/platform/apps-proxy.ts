import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { createProxyServer } from "http-proxy-3";
import { WebSocketServer } from "ws";
import type { PlatformServer } from "./server.js";
import type { TokenStore } from "./tokens.js";

export interface LogEntry {
  source: string;
  /** Seconds since the epoch, as the real stream sends it. */
  timestamp: number;
  message: string;
}

/** The app's output, kept for late subscribers and pushed live to every `/logz/stream` client. */
export class LogBuffer {
  private readonly entries: LogEntry[] = [];
  private readonly listeners = new Set<(e: LogEntry) => void>();
  constructor(private readonly max = 5000) {}
  push(source: string, message: string): void {
    const entry = { source, timestamp: Date.now() / 1000, message };
    this.entries.push(entry);
    if (this.entries.length > this.max) this.entries.shift();
    for (const l of this.listeners) l(entry);
  }
  snapshot(): LogEntry[] {
    return [...this.entries];
  }
  subscribe(listener: (e: LogEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export interface AppsProxyOptions {
  tokens: Pick<TokenStore, "verifyHeader">;
  /** Where the app listens (its DATABRICKS_APP_PORT). */
  target: string;
  /** The workspace's login page, where a request without a valid token is redirected. */
  loginUrl: () => string;
  logs: LogBuffer;
  /** The signed-in user the proxy names in X-Forwarded-* headers. */
  userEmail: string;
}

export interface AppsProxy {
  close(): void;
  /** Open `/logz/stream` sockets (tests drop them to exercise reconnects). */
  logSockets(): Set<import("ws").WebSocket>;
}

/**
 * The Apps proxy in front of an app: every request needs a valid bearer token (without one, a 302 to
 * the login page), requests carry X-Forwarded-* headers, WebSockets pass through, and `/logz/stream`
 * serves the app's logs (first message from the client = the filter, then JSON entries).
 */
export function registerAppsProxy(appHost: PlatformServer, options: AppsProxyOptions): AppsProxy {
  const { tokens, logs } = options;
  const proxy = createProxyServer({ target: options.target, xfwd: true, ws: true });
  proxy.on("error", (err, _req, res) => {
    const r = res as unknown as {
      headersSent?: boolean;
      writeHead?: (s: number, h: object) => void;
      end?: (b: string) => void;
      destroy?: () => void;
    };
    if (r.writeHead && !r.headersSent) {
      r.writeHead(502, { "content-type": "text/plain" });
      r.end?.(`Bad gateway: the app is not answering (${err.message})`);
    } else r.destroy?.();
  });
  const forwardedHeaders = (req: IncomingMessage) => {
    req.headers["x-forwarded-email"] = options.userEmail;
    req.headers["x-forwarded-user"] = options.userEmail;
    req.headers["x-forwarded-preferred-username"] = options.userEmail.split("@")[0];
    req.headers["x-real-ip"] = req.socket.remoteAddress ?? "127.0.0.1";
  };
  appHost.fallback((req, res) => {
    if (!tokens.verifyHeader(req.headers.authorization)) {
      res.writeHead(302, {
        location: `${options.loginUrl()}?next_url=${encodeURIComponent(req.url ?? "/")}`,
      });
      res.end();
      return true;
    }
    forwardedHeaders(req);
    proxy.web(req, res);
    return true;
  });
  const wss = new WebSocketServer({ noServer: true });
  const sockets = new Set<import("ws").WebSocket>();
  appHost.upgrade("/logz/stream", (req, socket: Duplex, head) => {
    if (!tokens.verifyHeader(req.headers.authorization)) {
      socket.end("HTTP/1.1 401 Unauthorized\r\n\r\n");
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      sockets.add(ws);
      ws.on("close", () => sockets.delete(ws));
      ws.once("message", (data) => {
        const filter = String(data);
        const send = (e: LogEntry) => {
          if (!filter || e.message.includes(filter)) ws.send(JSON.stringify(e));
        };
        for (const e of logs.snapshot()) send(e);
        const unsubscribe = logs.subscribe(send);
        ws.on("close", unsubscribe);
      });
    });
  });
  appHost.upgrade("/", (req, socket: Duplex, head) => {
    if (!tokens.verifyHeader(req.headers.authorization)) {
      socket.end("HTTP/1.1 401 Unauthorized\r\n\r\n");
      return;
    }
    forwardedHeaders(req);
    proxy.ws(req, socket, head);
  });
  return {
    close() {
      for (const s of sockets) s.terminate();
      wss.close();
      proxy.close();
    },
    logSockets: () => sockets,
  };
}
