import { AUDITED_METHODS, type AuditOutcome, shortError } from "./audit-rows.js";

/**
 * Reading JSON-RPC out of the bytes the router passes on, within a cap: a message larger than the cap is not
 * parsed whole (a tool result of megabytes must not cost a megabyte parse per call); its head and tail are kept
 * and read with patterns instead, which is enough for the method, the tool name, the id and isError.
 */
export const MAX_PARSED_BYTES = 64 * 1024;
const HEAD_BYTES = 4096;
const TAIL_BYTES = 1024;

/** A JSON-RPC request worth a row. `key` is the id as JSON (ids may be numbers or strings). */
export interface RequestMessage {
  key: string;
  method: string;
  /** tools/call and prompts/get: the name; resources/read: the uri. */
  name?: string;
  arguments?: unknown;
  /** initialize: `name/version` of the client. */
  client?: string;
}

export interface AnswerMessage {
  key: string;
  outcome: Exclude<AuditOutcome, "refused" | "cut">;
  error?: string;
}

/** Collects a body as it passes: all of it up to the cap, else its head and tail. Never holds the stream up. */
export class BodyTap {
  bytes = 0;
  private chunks: Buffer[] = [];
  private tail: Buffer[] = [];
  private tailBytes = 0;

  add(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (this.bytes <= MAX_PARSED_BYTES) {
      this.chunks.push(chunk);
      return;
    }
    if (this.chunks.length > 0 && this.bytes - chunk.length <= MAX_PARSED_BYTES) {
      // Crossed the cap: keep only the head.
      const all = Buffer.concat(this.chunks);
      this.chunks = [all.subarray(0, HEAD_BYTES)];
    }
    this.tail.push(chunk);
    this.tailBytes += chunk.length;
    while (this.tail.length > 1 && this.tailBytes - this.tail[0]!.length >= TAIL_BYTES)
      this.tailBytes -= this.tail.shift()!.length;
  }

  get oversize(): boolean {
    return this.bytes > MAX_PARSED_BYTES;
  }

  text(): string {
    // Most bodies are one chunk: no copy.
    return (this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks)).toString("utf8");
  }

  /**
   * Lets go of the bytes (the count stays). A chunk the HTTP parser hands out is a view of a whole socket
   * read (headers and all): held, it would keep that alive for as long as the exchange is remembered.
   */
  release(): void {
    this.chunks = [];
    this.tail = [];
    this.tailBytes = 0;
  }

  /** Head and tail of an oversize body (the tail cut to TAIL_BYTES). */
  ends(): { head: string; tail: string } {
    const t = Buffer.concat(this.tail);
    return { head: this.text(), tail: t.subarray(Math.max(0, t.length - TAIL_BYTES)).toString("utf8") };
  }
}

const asObject = (v: unknown): Record<string, unknown> | undefined =>
  v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

function keyOf(id: unknown): string | undefined {
  return typeof id === "string" || typeof id === "number" ? JSON.stringify(id) : undefined;
}

function requestOf(m: unknown): RequestMessage | undefined {
  const o = asObject(m);
  if (!o || typeof o.method !== "string" || !AUDITED_METHODS.has(o.method)) return undefined;
  const key = keyOf(o.id);
  if (key === undefined) return undefined;
  const params = asObject(o.params);
  const r: RequestMessage = { key, method: o.method };
  if (o.method === "tools/call" || o.method === "prompts/get") {
    if (typeof params?.name === "string") r.name = params.name;
    r.arguments = params?.arguments;
  } else if (o.method === "resources/read" && typeof params?.uri === "string") r.name = params.uri;
  else if (o.method === "initialize") {
    const info = asObject(params?.clientInfo);
    if (typeof info?.name === "string")
      r.client = `${info.name}${typeof info.version === "string" ? `/${info.version}` : ""}`.slice(0, 200);
  }
  return r;
}

const METHOD_RE = /"method"\s*:\s*"([^"\\]{1,100})"/;
const NAME_RE = /"(?:name|uri)"\s*:\s*"((?:[^"\\]|\\.){1,300})"/;
const ID_RE = /"id"\s*:\s*("(?:[^"\\]|\\.){0,200}"|-?\d{1,20})/g;

function lastId(text: string): string | undefined {
  let last: string | undefined;
  for (const m of text.matchAll(ID_RE)) last = m[1];
  if (last === undefined) return undefined;
  try {
    return keyOf(JSON.parse(last));
  } catch {
    return undefined;
  }
}

/** The audited requests in a request body (one message or a batch). */
export function requestsIn(tap: BodyTap): RequestMessage[] {
  if (tap.oversize) {
    // The SDK serializes `{method, params, jsonrpc, id}`: the method and the name lead, the id trails.
    const { head, tail } = tap.ends();
    const method = METHOD_RE.exec(head)?.[1];
    const key = lastId(tail) ?? lastId(head);
    if (!method || !AUDITED_METHODS.has(method) || key === undefined) return [];
    const name = method === "initialize" ? undefined : NAME_RE.exec(head)?.[1];
    return [{ key, method, name }];
  }
  let value: unknown;
  try {
    value = JSON.parse(tap.text());
  } catch {
    return [];
  }
  const out: RequestMessage[] = [];
  for (const m of Array.isArray(value) ? value : [value]) {
    const r = requestOf(m);
    if (r) out.push(r);
  }
  return out;
}

function answerOf(m: unknown): AnswerMessage | undefined {
  const o = asObject(m);
  if (!o || o.method !== undefined) return undefined;
  const key = keyOf(o.id);
  if (key === undefined) return undefined;
  const error = asObject(o.error);
  if (error) {
    const code = typeof error.code === "number" ? ` (${error.code})` : "";
    return {
      key,
      outcome: "protocol_error",
      error: shortError(`${String(error.message ?? "error")}${code}`),
    };
  }
  const result = asObject(o.result);
  if (result?.isError === true) {
    const content = Array.isArray(result.content) ? result.content : [];
    const text = content.map((c) => asObject(c)?.text).find((t) => typeof t === "string") as
      | string
      | undefined;
    return { key, outcome: "tool_error", error: shortError(text ?? "the tool reported an error") };
  }
  return { key, outcome: "ok" };
}

/** `,"id":<id>}` at the very end of a message: where the SDK puts an answer's id. */
const TRAILING_ID_RE = /,"id":("(?:[^"\\]|\\.){0,200}"|-?\d{1,20})\}\s*$/;
const TRAILING_ID_CHARS = 256;

/**
 * A success as the MCP SDK writes it (`{"result":…,"jsonrpc":"2.0","id":…}`, Protocol's answer), told without
 * parsing the result: it starts with its result, ends with its id, and has no `isError` anywhere (a tool result
 * that has one, even nested, is parsed whole). Errors start with `jsonrpc`/`id` and are always parsed.
 */
function plainSuccess(text: string): AnswerMessage | undefined {
  if (!text.startsWith('{"result":') || text.includes('"isError"')) return undefined;
  const m = TRAILING_ID_RE.exec(text.length > TRAILING_ID_CHARS ? text.slice(-TRAILING_ID_CHARS) : text);
  if (!m) return undefined;
  try {
    const key = keyOf(JSON.parse(m[1]!));
    return key === undefined ? undefined : { key, outcome: "ok" };
  } catch {
    return undefined;
  }
}

/**
 * The answers in one JSON text (a body or an SSE event's data): a plain success by its shape, anything else
 * parsed whole when it is within the cap.
 */
export function answersInText(text: string): AnswerMessage[] {
  const quick = plainSuccess(text);
  if (quick) return [quick];
  if (text.length > MAX_PARSED_BYTES)
    return answersInEnds(text.slice(0, HEAD_BYTES), text.slice(-TAIL_BYTES));
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return [];
  }
  const out: AnswerMessage[] = [];
  for (const m of Array.isArray(value) ? value : [value]) {
    const a = answerOf(m);
    if (a) out.push(a);
  }
  return out;
}

/** An oversize answer read by its ends: `{result:{content:[…],isError}, jsonrpc, id}` as the SDK writes it. */
function answersInEnds(head: string, tail: string): AnswerMessage[] {
  const key = lastId(tail) ?? lastId(head);
  if (key === undefined) return [];
  if (/^\s*\{\s*(?:"(?:jsonrpc|id)"\s*:\s*(?:"[^"]*"|\d+)\s*,\s*)*"error"\s*:/.test(head))
    return [{ key, outcome: "protocol_error", error: "an error answer too large to read" }];
  if (/"isError"\s*:\s*true/.test(tail) || /"isError"\s*:\s*true/.test(head))
    return [{ key, outcome: "tool_error", error: "a tool error too large to read" }];
  return [{ key, outcome: "ok" }];
}

export function answersInBody(tap: BodyTap): AnswerMessage[] {
  if (!tap.oversize) return answersInText(tap.text());
  const { head, tail } = tap.ends();
  return answersInEnds(head, tail);
}
