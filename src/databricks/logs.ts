import WebSocket from "ws";
import { DatabricksError } from "../errors.js";

/** One entry of the Apps log stream, as the platform sends it. */
export interface AppLogEntry {
  source: string;
  /** Seconds since the epoch (float). */
  timestamp: number;
  message: string;
}

export interface LogStreamOptions {
  appUrl: string;
  token: () => Promise<string>;
  /** The server-side filter, sent as the first message (empty: everything). */
  search?: string;
  /** Keep streaming (and reconnect when the stream drops) until `signal` aborts. */
  follow: boolean;
  onEntry: (e: AppLogEntry) => void;
  /** Without follow: stop once nothing new arrived for this long. */
  idleMs?: number;
  signal?: AbortSignal;
  /** Reconnect backoff: first delay and cap. */
  backoffMs?: { first: number; max: number };
  onReconnect?: (attempt: number, delayMs: number, why: string) => void;
}

export interface LogStreamResult {
  entries: number;
  reconnects: number;
}

export function logStreamUrl(appUrl: string): string {
  return `${appUrl.replace(/^http/i, "ws")}/logz/stream`;
}

/**
 * Reads `wss://<app>/logz/stream` the way the Databricks CLI's `apps logs` does: bearer token and
 * Origin headers, the filter as the first text message, then JSON entries. With `follow`, a dropped
 * stream is reopened with backoff; entries the server replays after a reconnect are not repeated.
 */
export async function streamLogs(options: LogStreamOptions): Promise<LogStreamResult> {
  const backoff = options.backoffMs ?? { first: 500, max: 30_000 };
  const seen = new Set<string>();
  let newest = -Infinity;
  let entries = 0;
  let reconnects = 0;
  let failures = 0;

  const accept = (e: AppLogEntry) => {
    const key = `${e.timestamp}\u0000${e.source}\u0000${e.message}`;
    if (e.timestamp < newest || seen.has(key)) return;
    if (e.timestamp > newest) {
      newest = e.timestamp;
      seen.clear();
    }
    seen.add(key);
    entries++;
    options.onEntry(e);
  };

  /** How one connection ended; `failed` means it never opened (`why` says what stopped it). */
  type Ending = { how: "closed" | "idle" | "aborted" } | { how: "failed"; why: string };
  const url = logStreamUrl(options.appUrl);

  const once = (): Promise<Ending> =>
    new Promise((resolve, reject) => {
      if (options.signal?.aborted) return resolve({ how: "aborted" });
      let settled = false;
      let opened = false;
      let idleTimer: NodeJS.Timeout | undefined;
      const finish = (how: "closed" | "idle" | "aborted", why?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(idleTimer);
        options.signal?.removeEventListener("abort", onAbort);
        ws.removeAllListeners();
        ws.on("error", () => undefined);
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
        resolve(
          how === "closed" && !opened ? { how: "failed", why: why ?? "the connection closed" } : { how },
        );
      };
      const armIdle = () => {
        if (options.follow) return;
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => finish("idle"), options.idleMs ?? 2000);
      };
      const onAbort = () => finish("aborted");
      let ws: WebSocket;
      options
        .token()
        .then((token) => {
          ws = new WebSocket(url, {
            headers: { authorization: `Bearer ${token}`, origin: new URL(options.appUrl).origin },
            handshakeTimeout: 15_000,
          });
          options.signal?.addEventListener("abort", onAbort, { once: true });
          ws.on("unexpected-response", (_req, res) => {
            const status = res.statusCode ?? 0;
            res.resume();
            if (status === 401 || status === 403 || (status >= 300 && status < 400)) {
              settled = true;
              ws.terminate();
              reject(
                new DatabricksError(
                  "logs_unauthorized",
                  `the log stream refused the token (HTTP ${status})`,
                  "use an OAuth profile (`databricks auth login --profile <profile>`); PATs are not accepted by the Apps proxy",
                ),
              );
              return;
            }
            finish("closed", `HTTP ${status}`);
          });
          ws.on("open", () => {
            opened = true;
            ws.send(options.search ?? "");
            armIdle();
          });
          ws.on("message", (data) => {
            failures = 0;
            armIdle();
            try {
              const e = JSON.parse(String(data)) as AppLogEntry;
              if (typeof e.message === "string") accept(e);
            } catch {
              // Not an entry (keep-alive or noise): skip it.
            }
          });
          ws.on("close", () => finish("closed"));
          ws.on("error", (err) => finish("closed", err.message || (err as NodeJS.ErrnoException).code));
        })
        .catch(reject);
    });

  for (;;) {
    const ending = await once();
    if (ending.how === "aborted" || ending.how === "idle") break;
    if (!options.follow) {
      // An empty log and a stream that cannot be reached must not look alike.
      if (ending.how === "failed") {
        throw new DatabricksError(
          "logs_unreachable",
          `could not open the log stream ${url}: ${ending.why}`,
          "check that the app is deployed and running (`make app-status`), then try again",
        );
      }
      break;
    }
    if (options.signal?.aborted) break;
    failures++;
    reconnects++;
    const delay = Math.min(backoff.max, backoff.first * 2 ** (failures - 1));
    options.onReconnect?.(
      reconnects,
      delay,
      ending.how === "failed" ? `could not connect: ${ending.why}` : "the log stream closed",
    );
    const aborted = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), delay);
      options.signal?.addEventListener(
        "abort",
        () => {
          clearTimeout(t);
          resolve(true);
        },
        { once: true },
      );
    });
    if (aborted) break;
  }
  return { entries, reconnects };
}
