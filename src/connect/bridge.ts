import type { Readable, Writable } from "node:stream";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  ErrorCode,
  isInitializeRequest,
  isJSONRPCErrorResponse,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type RequestId,
} from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "../log/logger.js";
import { maskSecrets, registerSecret } from "../log/secrets.js";
import { retry } from "../retry.js";
import type { TokenSource } from "./token-source.js";

export interface BridgeOptions {
  /** The endpoint's streamable HTTP URL: `<app url>/metamcp/<endpoint>/mcp`. */
  url: URL;
  tokens: TokenSource;
  /**
   * MetaMCP's API key, sent as `X-API-Key` (upstream checks it before `Authorization`). None for an endpoint
   * that accepts the Databricks identity: then the Databricks token is all the bridge sends.
   */
  apiKey?: string;
  /** stderr only: stdout is the protocol. */
  log: Logger;
  stdin?: Readable;
  stdout?: Writable;
  /** Injected for tests of the HTTP side; defaults to the global fetch. */
  fetch?: FetchLike;
}

export interface Bridge {
  /** Resolves when the client closed stdin (or `close()` was called) and the session was ended. */
  done: Promise<void>;
  close(): Promise<void>;
}

/** What the Apps proxy answers when it does not take the token: a redirect to the login page or a 401. */
/** The proxy refused the first token: retried once with a fresh one (the message is what it said). */
class TokenRefused extends Error {}

function proxyRefused(res: Response): boolean {
  return res.status === 401 || (res.status >= 300 && res.status < 400);
}

function describeRefusal(res: Response, body: string): string {
  if (res.status >= 300 && res.status < 400) {
    const where = (res.headers.get("location") ?? "").split("?")[0];
    return `the Apps proxy sent the request to its login page (${res.status} → ${where}): it did not accept the Databricks token`;
  }
  return `HTTP ${res.status} ${maskSecrets(body.slice(0, 200))}`;
}

/**
 * The stdio bridge: an MCP client (Claude Desktop, Cursor, …) speaks MCP on our stdin/stdout; every
 * message is relayed unchanged over the SDK's Streamable HTTP client transport to the endpoint behind
 * the Databricks Apps proxy. The bridge owns only what the client cannot do itself:
 *
 * - each HTTP request carries a current Databricks OAuth token and the MetaMCP key, so an hour-long
 *   session outlives every token; a request the proxy refuses is retried once with a fresh token;
 * - a call whose response stream the proxy cuts (120 s per request, ~300 s per stream) gets a clear
 *   JSON-RPC error at once instead of hanging, and the session stays usable for the next call.
 */
export async function startBridge(options: BridgeOptions): Promise<Bridge> {
  const { log, tokens, url } = options;
  const baseFetch: FetchLike = options.fetch ?? ((u, init) => fetch(u, init));
  if (options.apiKey) registerSecret(options.apiKey);

  /** Requests from the client still waiting for their response, with when they were sent. */
  const pending = new Map<RequestId, { method: string; sentAt: number }>();
  /** Requests we already answered with an error (a late real response must not follow it). */
  const failed = new Set<RequestId>();
  let initializeId: RequestId | undefined;

  const stdio = new StdioServerTransport(options.stdin, options.stdout);

  const answerWithError = (id: RequestId, message: string, code: number = ErrorCode.ConnectionClosed) => {
    if (!pending.delete(id)) return;
    failed.add(id);
    stdio.send({ jsonrpc: "2.0", id, error: { code, message } }).catch(() => undefined);
  };

  /** Adds the credentials to every request and watches the response streams of calls. */
  const authorizedFetch: FetchLike = async (input, init) => {
    const ids = requestIds(init?.body);
    // A token the proxy refuses is retried once with a fresh one; nothing else is retried.
    const res = await retry(
      async (attempt) => {
        const token = attempt === 1 ? await tokens.token() : await tokens.refresh();
        const headers = new Headers(init?.headers);
        headers.set("authorization", `Bearer ${token}`);
        if (options.apiKey) headers.set("x-api-key", options.apiKey);
        let res: Response;
        try {
          res = await baseFetch(input, { ...init, headers, redirect: "manual" });
        } catch (err) {
          if ((err as Error).name === "AbortError") throw err;
          const cause = (err as { cause?: { code?: string; message?: string } }).cause;
          throw new Error(
            `cannot reach ${url.origin} (${cause?.code ?? cause?.message ?? (err as Error).message}): is the app running? (\`make app-status\`, or \`make local\` for local)`,
          );
        }
        if (!proxyRefused(res)) return res;
        const body = await res.text().catch(() => "");
        if (attempt === 1) throw new TokenRefused(describeRefusal(res, body));
        throw new Error(
          res.status === 401
            ? options.apiKey
              ? `the endpoint refused the request (${describeRefusal(res, body)}): check the MetaMCP API key (and that it belongs to this MetaMCP), or the Databricks login of ${tokens.description}`
              : `the endpoint refused the request without a MetaMCP API key (${describeRefusal(res, body)}): it does not accept the Databricks identity; its owner can turn that on with \`connect <endpoint> --identity on\`, or save a MetaMCP key with \`connect <endpoint> --save-key\``
            : `${describeRefusal(res, body)} (${tokens.description})`,
        );
      },
      {
        retries: 1,
        firstWaitMs: 0,
        maxWaitMs: 0,
        retryable: (err) => err instanceof TokenRefused,
        onRetry: (err) => log.debug(`refused (${(err as Error).message}); retrying with a fresh token`),
      },
    );
    if (res.status === 504 && ids.length > 0) {
      // The proxy's request cut before the answer started: name it, not the bare status.
      const body = await res.text().catch(() => "");
      const first = pending.get(ids[0]!);
      throw new Error(
        cutMessage(
          first?.method ?? "the call",
          first?.sentAt,
          `the proxy answered 504 ${maskSecrets(body.slice(0, 80))}`,
        ),
      );
    }
    const streaming = (res.headers.get("content-type") ?? "").includes("text/event-stream");
    if (ids.length === 0 || !streaming || !res.body) return res;
    return watchStream(res, (how) => {
      // The transport parses what arrived before the cut on the following ticks: look after them.
      setTimeout(() => {
        for (const id of ids) {
          const p = pending.get(id);
          if (!p) continue;
          log.warn(`${p.method} (id ${String(id)}) lost its response stream (${how})`);
          answerWithError(id, cutMessage(p.method, p.sentAt, how));
        }
      }, 20);
    });
  };

  const http = new StreamableHTTPClientTransport(url, {
    fetch: authorizedFetch,
    // The standalone server-to-client stream is cut by the proxy every ~300 s: always come back.
    reconnectionOptions: {
      initialReconnectionDelay: 1000,
      maxReconnectionDelay: 30_000,
      reconnectionDelayGrowFactor: 1.5,
      maxRetries: Number.POSITIVE_INFINITY,
    },
  });

  http.onmessage = (message: JSONRPCMessage) => {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      const id = message.id as RequestId;
      if (failed.has(id)) {
        failed.delete(id);
        log.info(`a late response for request ${String(id)} arrived after its stream was cut: dropped`);
        return;
      }
      pending.delete(id);
      if (id === initializeId && isJSONRPCResultResponse(message)) {
        const version = (message.result as { protocolVersion?: string }).protocolVersion;
        if (version) http.setProtocolVersion(version);
      }
    }
    stdio.send(message).catch((err: unknown) => log.error(`writing to stdout failed: ${String(err)}`));
  };
  http.onerror = (err) => log.debug(`HTTP transport: ${maskSecrets(err.message)}`);

  stdio.onmessage = (message: JSONRPCMessage) => {
    if (isJSONRPCRequest(message)) {
      pending.set(message.id, { method: message.method, sentAt: Date.now() });
      if (isInitializeRequest(message)) initializeId = message.id;
    } else if ("method" in message && message.method === "notifications/cancelled") {
      // A cancelled request gets no answer: stop waiting for one.
      const id = (message.params as { requestId?: RequestId } | undefined)?.requestId;
      if (id !== undefined) pending.delete(id);
    }
    http.send(message).catch((err: unknown) => {
      const text = maskSecrets(err instanceof Error ? err.message : String(err));
      if (isJSONRPCRequest(message)) {
        log.warn(`${message.method} (id ${String(message.id)}) failed: ${text}`);
        answerWithError(message.id, `metamcp-databricks bridge: ${text}`);
      } else {
        log.warn(`could not deliver a message to MetaMCP: ${text}`);
      }
    });
  };
  stdio.onerror = (err) => log.warn(`stdin: ${err.message}`);

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      for (const id of [...pending.keys()]) answerWithError(id, "the bridge is shutting down");
      // End the MetaMCP session so its upstream MCP servers are released (405 = not supported: fine).
      await http.terminateSession().catch(() => undefined);
      await http.close().catch(() => undefined);
      await stdio.close().catch(() => undefined);
      resolveDone();
    })();
    return closing;
  };
  const stdin = options.stdin ?? process.stdin;
  stdin.once("end", () => void close());
  stdin.once("close", () => void close());

  await http.start();
  await stdio.start();
  log.info(`bridge ready: stdio ⇄ ${url.href} (token from ${tokens.description})`);
  return { done, close };
}

/** What the client shows when the proxy cut a call: what happened, why, and that the next call works. */
function cutMessage(method: string, sentAt: number | undefined, how: string): string {
  const after = sentAt ? ` after ${((Date.now() - sentAt) / 1000).toFixed(0)} s` : "";
  return `the connection to MetaMCP was cut${after}, before the result of ${method} arrived (${how}). The Databricks Apps proxy ends a request at 120 s and a stream at about 300 s; the tool may still have run on the server. The bridge is still connected: the next call works.`;
}

/** The ids of the JSON-RPC requests in a POST body (a single message or a batch). */
function requestIds(body: unknown): RequestId[] {
  if (typeof body !== "string") return [];
  try {
    const parsed = JSON.parse(body) as unknown;
    const messages = Array.isArray(parsed) ? parsed : [parsed];
    return messages.filter((m) => isJSONRPCRequest(m)).map((m) => (m as { id: RequestId }).id);
  } catch {
    return [];
  }
}

/** The same response, with a callback when its body ends or breaks (the response stream of a call). */
function watchStream(res: Response, onEnd: (how: string) => void): Response {
  const reader = res.body!.getReader();
  let ended = false;
  const end = (how: string) => {
    if (ended) return;
    ended = true;
    onEnd(how);
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          end("the server closed the stream");
        } else controller.enqueue(value);
      } catch (err) {
        controller.error(err);
        end(`the stream broke: ${(err as Error).message}`);
      }
    },
    cancel(reason) {
      end("the stream was cancelled");
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}
