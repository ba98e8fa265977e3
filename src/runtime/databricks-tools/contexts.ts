import { randomBytes } from "node:crypto";

/**
 * The header the router sets on a request it passes to MetaMCP's backend: an opaque handle for the person's
 * on-behalf-of token, which itself never leaves the runtime (design §2). A client's own copy is always deleted.
 */
export const CONTEXT_HEADER = "x-metamcp-databricks-context";
/** How long a handle outlives its request's answer: SSE's `POST /message` answers 202 before the tool runs, and
 * MetaMCP gives a tool up to 110 s. */
export const RELEASE_GRACE_MS = 120_000;
export const MAX_CONTEXTS = 10_000;

export interface ToolContext {
  /** The person's workspace token, as the Apps proxy forwarded it with this request (X-Forwarded-Access-Token). */
  token: string;
  /** Who the Apps proxy said is calling (X-Forwarded-Email): the principal the gateway binds sessions to. */
  email: string;
}

interface Entry extends ToolContext {
  /** Open while the request runs; from its release, RELEASE_GRACE_MS more (never past the token's own `exp`). */
  expiresAt: number;
  releasedAt?: number;
}

/** The `exp` of a token that is a readable JWT (design Q3: whether the forwarded one is, is unverified). */
export function jwtExpiryMs(token: string): number | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8")) as { exp?: unknown };
    return typeof payload.exp === "number" && Number.isFinite(payload.exp) ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Per-request on-behalf-of tokens, behind random 256-bit handles, in this process's memory only (never on disk,
 * never in MetaMCP): "use the forwarded token only for the active request … never store user tokens"
 * (Databricks' on-behalf-of guidance, design §1.2). A handle is good while its request runs and
 * RELEASE_GRACE_MS after its answer, then forgotten; at most `max` at once, the least recently used dropped.
 */
export class ToolContexts {
  private readonly entries = new Map<string, Entry>();
  private lastSweep = 0;

  constructor(
    private readonly now: () => number = Date.now,
    private readonly max = MAX_CONTEXTS,
    private readonly graceMs = RELEASE_GRACE_MS,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  open(context: ToolContext): string {
    const handle = randomBytes(32).toString("hex");
    const exp = jwtExpiryMs(context.token);
    this.entries.set(handle, { ...context, expiresAt: exp ?? Number.POSITIVE_INFINITY });
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
    return handle;
  }

  /** The request's answer is done: the handle lives on for the grace, then is gone. */
  release(handle: string): void {
    const e = this.entries.get(handle);
    if (!e || e.releasedAt !== undefined) return;
    e.releasedAt = this.now();
    e.expiresAt = Math.min(e.expiresAt, e.releasedAt + this.graceMs);
    this.sweep();
  }

  get(handle: string | undefined): ToolContext | undefined {
    if (!handle) return undefined;
    const e = this.entries.get(handle);
    if (!e) return undefined;
    if (e.expiresAt <= this.now()) {
      this.entries.delete(handle);
      return undefined;
    }
    // Recently used goes last: the LRU cap drops from the front.
    this.entries.delete(handle);
    this.entries.set(handle, e);
    return { token: e.token, email: e.email };
  }

  /** Forgets every expired handle: on release, at most once a second, so a busy router does not walk the table
   * per request, and it never holds much more than the grace's worth. */
  sweep(): void {
    const t = this.now();
    if (t - this.lastSweep < 1000) return;
    this.lastSweep = t;
    for (const [h, e] of this.entries) if (e.expiresAt <= t) this.entries.delete(h);
  }
}
