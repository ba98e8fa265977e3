import type { TokenSource } from "../connect/token-source.js";
import { EXIT, UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";

/**
 * MetaMCP's own tRPC (`/trpc/frontend.<procedure>?batch=1`, as its UI's httpBatchLink calls it), called as
 * the person whose Databricks token this is, through the Apps proxy: the token gets the request past the
 * proxy, which names the person (X-Forwarded-Email); our router signs that identity in to MetaMCP on a page
 * request (docs/identity.md) and hands back MetaMCP's session cookie, which tRPC's context reads. So the
 * server is created by MetaMCP's own `mcpServers.create` as that person, with every check MetaMCP and our
 * patches make there (the STDIO and app-identity policies answer FORBIDDEN), and no route of ours.
 */
export interface McpServerRow {
  uuid: string;
  name: string;
  description: string | null;
  type: string;
  url: string | null;
  user_id: string | null;
  created_at?: string;
}

export interface CreateServerInput {
  name: string;
  description: string;
  url: string;
  /** null: public (every MetaMCP user sees it); undefined: the caller's own ("For myself" in the UI). */
  user_id: null | undefined;
}

/** better-auth's session cookie; `__Secure-` prefixed on https (the app's URL on Databricks). */
const SESSION_COOKIE = /^(?:__Secure-)?better-auth\.session_token$/;

interface TrpcError {
  message?: string;
  data?: { code?: string; httpStatus?: number };
}

/**
 * The proxy refused the token (its 401, or its redirect to the workspace's login, off the app's origin; the app's
 * own redirects stay on it): the one failure worth another try, with a fresh token.
 */
function proxyRefused(res: Response, appUrl: string): boolean {
  // The app's own 401 (tRPC's UNAUTHORIZED) is JSON: that one is judged where it is read.
  if (res.status === 401) return !/json/i.test(res.headers.get("content-type") ?? "");
  if (res.status < 300 || res.status >= 400) return false;
  const location = res.headers.get("location");
  return !location || new URL(location, appUrl).origin !== new URL(appUrl).origin;
}

export class MetaMcpClient {
  private cookie: string | undefined;

  constructor(
    private readonly appUrl: string,
    private readonly tokens: TokenSource,
    private readonly fetchFn: typeof fetch = fetch,
  ) {}

  private async send(url: string, init: RequestInit, fresh = false): Promise<Response> {
    const token = fresh ? await this.tokens.refresh() : await this.tokens.token();
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${token}`);
    if (this.cookie) headers.set("cookie", this.cookie);
    try {
      return await this.fetchFn(url, {
        ...init,
        headers,
        redirect: "manual",
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      throw new UserError(
        "app_unreachable",
        `cannot reach the app at ${new URL(url).origin} (${(err as Error).message})`,
        EXIT.databricks,
        "is the app running? (`make app-status`, or `make local` for the local rehearsal)",
      );
    }
  }

  private async request(url: string, init: RequestInit): Promise<Response> {
    const first = await this.send(url, init);
    if (!proxyRefused(first, this.appUrl)) return first;
    await first.body?.cancel();
    const second = await this.send(url, init, true);
    if (proxyRefused(second, this.appUrl))
      throw new UserError(
        "not_signed_in",
        `the Apps proxy did not accept the Databricks token of ${this.tokens.description} (HTTP ${second.status})`,
        EXIT.databricks,
        "sign in again (`databricks auth login --profile <profile>`), or for the local rehearsal start it (`make local`) and sign in once at its login page",
      );
    return second;
  }

  /** A MetaMCP session for the token's person: a page request, which our router signs in. */
  async signIn(): Promise<void> {
    if (this.cookie) return;
    const res = await this.request(`${this.appUrl}/`, { method: "GET" });
    await res.body?.cancel();
    const session = res.headers
      .getSetCookie()
      .map((c) => c.split(";")[0] ?? "")
      .find((pair) => SESSION_COOKIE.test(pair.slice(0, pair.indexOf("="))));
    if (!session)
      throw new UserError(
        "not_signed_in",
        `MetaMCP did not open a session for ${this.tokens.description} (the app answered ${res.status} without one)`,
        EXIT.databricks,
        "open the app in a browser once: if MetaMCP refuses to create your user (its SSO sign-up is off), an admin must let you in; the app's log says why",
      );
    registerSecret(session.slice(session.indexOf("=") + 1));
    this.cookie = session;
  }

  private async trpc<T>(kind: "query" | "mutation", procedure: string, input?: unknown): Promise<T> {
    await this.signIn();
    const batch = JSON.stringify({ 0: input });
    const base = `${this.appUrl}/trpc/frontend.${procedure}?batch=1`;
    const res = await this.request(
      kind === "query" ? `${base}&input=${encodeURIComponent(batch)}` : base,
      kind === "query"
        ? { method: "GET", headers: { accept: "application/json" } }
        : {
            method: "POST",
            headers: { accept: "application/json", "content-type": "application/json", origin: this.appUrl },
            body: batch,
          },
    );
    const text = await res.text();
    let item: { result?: { data?: unknown }; error?: TrpcError & { json?: TrpcError } } | undefined;
    try {
      const parsed = JSON.parse(text) as unknown;
      item = (Array.isArray(parsed) ? parsed[0] : parsed) as typeof item;
    } catch {
      item = undefined;
    }
    if (!item || (!item.result && !item.error))
      throw new UserError(
        "metamcp_unexpected",
        `MetaMCP answered ${res.status} to ${procedure}, not with tRPC: is this app a MetaMCP prepared by this tool?`,
        EXIT.databricks,
      );
    if (item.error) throw trpcFailure(procedure, item.error.json ?? item.error);
    const data = item.result?.data as unknown;
    return (
      data && typeof data === "object" && "json" in data ? (data as { json: unknown }).json : data
    ) as T;
  }

  async createServer(input: CreateServerInput): Promise<McpServerRow> {
    const out = await this.trpc<{ success: boolean; data?: McpServerRow; message?: string }>(
      "mutation",
      "mcpServers.create",
      { ...input, type: "STREAMABLE_HTTP" },
    );
    if (out.success && out.data) return out.data;
    const message = out.message ?? "no reason given";
    if (/unique|duplicate|already exists/i.test(message))
      throw new UserError(
        "server_exists",
        `MetaMCP already has a server named ${input.name}${input.user_id === null ? " (public)" : " of yours"}`,
        EXIT.input,
        "pick another name with --name, or use the one there (`databricks-tools list`)",
      );
    throw new UserError(
      "server_not_created",
      `MetaMCP did not create ${input.name}: ${message}`,
      EXIT.databricks,
    );
  }

  /** The servers MetaMCP shows this person: their own and the public ones. */
  async listServers(): Promise<McpServerRow[]> {
    const out = await this.trpc<{ success: boolean; data?: McpServerRow[]; message?: string }>(
      "query",
      "mcpServers.list",
    );
    if (!out.success)
      throw new UserError(
        "servers_not_listed",
        `MetaMCP did not list the servers: ${out.message ?? "no reason given"}`,
        EXIT.databricks,
      );
    return out.data ?? [];
  }

  /** The MetaMCP user the session belongs to (better-auth's get-session), for telling own from public rows. */
  async userId(): Promise<string | undefined> {
    await this.signIn();
    const res = await this.request(`${this.appUrl}/api/auth/get-session`, { method: "GET" });
    const body = (await res.json().catch(() => null)) as { user?: { id?: string } } | null;
    return body?.user?.id;
  }
}

function trpcFailure(procedure: string, error: TrpcError): UserError {
  const code = error.data?.code ?? "ERROR";
  const message = error.message ?? "no message";
  switch (code) {
    case "FORBIDDEN":
      return new UserError(
        "forbidden",
        `MetaMCP refused ${procedure}: ${message}`,
        EXIT.input,
        "servers that run as the app's service principal are for whom the app's policy allows (METAMCP_DATABRICKS_APP_IDENTITY: managers by default): ask an app manager to add it, or to change the policy",
      );
    case "UNAUTHORIZED":
      return new UserError(
        "not_signed_in",
        `MetaMCP did not take the session for ${procedure}: ${message}`,
        EXIT.databricks,
        "run the command again; if it persists, open the app in a browser once and check the app's log",
      );
    case "BAD_REQUEST":
      return new UserError("bad_server", `MetaMCP refused the server: ${message}`, EXIT.input);
    default:
      return new UserError(
        "metamcp_failed",
        `MetaMCP failed ${procedure} (${code}): ${message}`,
        EXIT.databricks,
      );
  }
}
