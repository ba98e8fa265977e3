import { EXIT, UserError } from "../errors.js";
import { ENDPOINT_IDENTITY_ROUTE } from "../patches/endpoint-identity-module.js";
import { retry } from "../retry.js";
import { checkEndpointName } from "./target.js";
import type { TokenSource } from "./token-source.js";

/**
 * Whether a MetaMCP endpoint accepts the Databricks workspace identity instead of a MetaMCP API key
 * (docs/identity.md, "MCP clients"), asked of the app itself: the patched backend answers at
 * `/metamcp/_databricks/endpoint-identity/<endpoint>` for a request the Apps proxy signed in, and lets the
 * endpoint's owner change it (PUT). The caller is whoever holds the Databricks token: the person running
 * `connect`.
 */
export interface EndpointIdentityState {
  endpoint: string;
  acceptIdentity: boolean;
  /** False when the endpoint has no choice of its own and follows the app's default. */
  explicit: boolean;
  /** The app's default for endpoints without a choice. */
  default: boolean;
  /** Who the app saw (the token's workspace identity). */
  you?: string;
}

/** How `connect` decides whether a client needs a MetaMCP key. */
export type AuthMode = "key" | "identity";

export function parseAuthMode(value: string | undefined): AuthMode | undefined {
  if (value === undefined) return undefined;
  if (value === "key" || value === "identity") return value;
  throw new UserError(
    "bad_auth",
    `--auth ${value}: expected key or identity`,
    EXIT.input,
    "--auth identity sends only the Databricks token; --auth key also a MetaMCP API key",
  );
}

export function parseOnOff(value: string): boolean {
  if (/^(on|true|yes|1)$/i.test(value)) return true;
  if (/^(off|false|no|0)$/i.test(value)) return false;
  throw new UserError("bad_identity", `--identity ${value}: expected on or off`, EXIT.input);
}

/** The proxy refused the token (HTTP `status`): the one failure worth another try, with a fresh token. */
class TokenRefused extends Error {
  constructor(readonly status: number) {
    super(`the proxy refused the token (HTTP ${status})`);
  }
}

function settingsUrl(appUrl: string, endpoint: string): string {
  return `${appUrl.replace(/\/+$/, "")}${ENDPOINT_IDENTITY_ROUTE}/${checkEndpointName(endpoint)}`;
}

async function call(
  appUrl: string,
  endpoint: string,
  tokens: TokenSource,
  init: { method: "GET" | "PUT"; body?: string },
  fetchFn: typeof fetch,
): Promise<EndpointIdentityState> {
  const url = settingsUrl(appUrl, endpoint);
  // The proxy refusing the first token (a login redirect, or its 401) is retried once with a fresh one;
  // whatever the second answer is, it is judged below. Nothing else is retried.
  const res = await retry(
    async (attempt) => {
      const token = attempt === 1 ? await tokens.token() : await tokens.refresh();
      let res: Response;
      try {
        res = await fetchFn(url, {
          method: init.method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          ...(init.body ? { body: init.body } : {}),
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
      if (attempt === 1 && ((res.status >= 300 && res.status < 400) || res.status === 401))
        throw new TokenRefused(res.status);
      return res;
    },
    { retries: 1, firstWaitMs: 0, maxWaitMs: 0, retryable: (err) => err instanceof TokenRefused },
  );
  const body = (await res.json().catch(() => undefined)) as
    | (Partial<EndpointIdentityState> & { error?: string; message?: string })
    | undefined;
  const status = res.status;
  if (status === 200 && body && typeof body.acceptIdentity === "boolean")
    return body as EndpointIdentityState;
  if (status >= 300 && status < 400)
    throw new UserError(
      "token_refused",
      `the Apps proxy did not accept the Databricks token of ${tokens.description} (redirect to its login page)`,
      EXIT.databricks,
      "log in again (`databricks auth login --profile <profile>`), or `make local` for the local rehearsal",
    );
  if (status === 404 && body?.error === "Endpoint not found")
    throw new UserError(
      "endpoint_not_found",
      `MetaMCP has no endpoint named ${endpoint}`,
      EXIT.input,
      "use the name shown on MetaMCP's Endpoints page",
    );
  if (status === 404)
    throw new UserError(
      "identity_unsupported",
      `this app's MetaMCP does not offer the Databricks identity on endpoints (${url} answered 404)`,
      EXIT.input,
      "prepare and deploy a MetaMCP release that has it (v2.2.0 or later, prepared by this version of the tool); until then use a MetaMCP API key",
    );
  if (status === 401)
    throw new UserError(
      "identity_not_asserted",
      `the app did not receive a workspace identity for this request (${body?.message ?? "401"})`,
      EXIT.databricks,
      "the request must go through the Databricks Apps proxy with a user's OAuth token (not a service principal's)",
    );
  if (status === 403)
    throw new UserError(
      "identity_forbidden",
      `${body?.message ?? "access denied"} (endpoint ${endpoint}, as ${tokens.description})`,
      EXIT.input,
      "only the endpoint's owner can change it; a private endpoint of someone else is not yours to use",
    );
  throw new UserError(
    "identity_failed",
    `the app answered ${status} for ${init.method} ${new URL(url).pathname}: ${body?.message ?? body?.error ?? "no details"}`,
    EXIT.databricks,
  );
}

/** The endpoint's current choice, as the app sees it for this token's identity. */
export function getEndpointIdentity(
  appUrl: string,
  endpoint: string,
  tokens: TokenSource,
  fetchFn: typeof fetch = fetch,
): Promise<EndpointIdentityState> {
  return call(appUrl, endpoint, tokens, { method: "GET" }, fetchFn);
}

/** Turns the identity on or off for one endpoint (its owner only). */
export function setEndpointIdentity(
  appUrl: string,
  endpoint: string,
  tokens: TokenSource,
  accept: boolean,
  fetchFn: typeof fetch = fetch,
): Promise<EndpointIdentityState> {
  return call(
    appUrl,
    endpoint,
    tokens,
    { method: "PUT", body: JSON.stringify({ acceptIdentity: accept }) },
    fetchFn,
  );
}
