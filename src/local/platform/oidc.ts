import type { IncomingMessage } from "node:http";
import { ApiError, type PlatformServer, sendJson } from "./server.js";
import type { TokenStore } from "./tokens.js";

export interface OidcOptions {
  tokens: TokenStore;
  /** Service principals (and M2M profiles) allowed to use client_credentials: client id → secret. */
  clients: Map<string, string>;
  /** Lifetime of service-principal (M2M) tokens; Databricks issues one-hour tokens. */
  tokenTtlSeconds?: () => number;
  /**
   * Clients that act for a local USER (the local CLI client of `localUserToken`): client_credentials
   * with one of them yields a user token (subject = the user's email, `login_hint` picks the user), the
   * way `databricks auth token` yields the signed-in user's token.
   */
  userClients?: Map<string, string>;
  /** The local user a user client's token names; undefined refuses the hint. */
  userFor?: (loginHint: string | undefined) => string | undefined;
  /** Lifetime of user tokens (Databricks: one hour). */
  userTokenTtlSeconds?: () => number;
}

function clientFromRequest(
  req: IncomingMessage,
  body: Record<string, string>,
): { id?: string; secret?: string } {
  const m = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? "");
  if (m?.[1]) {
    const decoded = Buffer.from(m[1], "base64").toString("utf8");
    const i = decoded.indexOf(":");
    if (i > 0)
      return {
        id: decodeURIComponent(decoded.slice(0, i)),
        secret: decodeURIComponent(decoded.slice(i + 1)),
      };
  }
  return { id: body.client_id, secret: body.client_secret };
}

/** `POST /oidc/v1/token` with `grant_type=client_credentials` (Basic auth or form fields), scope `all-apis`. */
export function registerOidc(server: PlatformServer, options: OidcOptions): void {
  server.route("POST", "/oidc/v1/token", ({ req, res, body }) => {
    const form = (body ?? {}) as Record<string, string>;
    if (form.grant_type !== "client_credentials") {
      sendJson(res, 400, {
        error: "unsupported_grant_type",
        error_description: "only client_credentials is supported",
      });
      return;
    }
    const client = clientFromRequest(req, form);
    if (client.id && options.userClients?.has(client.id)) {
      if (options.userClients.get(client.id) !== client.secret) {
        sendJson(res, 401, { error: "invalid_client", error_description: "Client authentication failed" });
        return;
      }
      const user = options.userFor?.(form.login_hint || undefined);
      if (!user) {
        sendJson(res, 400, { error: "invalid_request", error_description: "unknown user in login_hint" });
        return;
      }
      const userTtl = options.userTokenTtlSeconds?.() ?? 3600;
      const issued = options.tokens.issue(user, userTtl);
      return { access_token: issued.token, token_type: "Bearer", expires_in: userTtl, scope: "all-apis" };
    }
    if (!client.id || options.clients.get(client.id) !== client.secret) {
      sendJson(res, 401, { error: "invalid_client", error_description: "Client authentication failed" });
      return;
    }
    // The scopes asked for (space-separated, RFC 6749 §3.3), `all-apis` when none: what the token may reach.
    const scopes = (form.scope ?? "all-apis").split(/\s+/).filter(Boolean);
    const m2mTtl = options.tokenTtlSeconds?.() ?? 3600;
    const issued = options.tokens.issue(client.id, m2mTtl, scopes.length > 0 ? scopes : ["all-apis"]);
    return {
      access_token: issued.token,
      token_type: "Bearer",
      expires_in: m2mTtl,
      scope: issued.scopes.join(" "),
    };
  });
}

/** Guard for REST routes: the caller's bearer token must be one we issued and still valid. */
export function requireBearer(tokens: TokenStore, req: IncomingMessage): string {
  const t = tokens.verifyHeader(req.headers.authorization);
  if (!t) throw new ApiError(401, "UNAUTHENTICATED", "Invalid access token.");
  return t.subject;
}

/**
 * OIDC discovery, as the SDKs use it to find the token endpoint for OAuth M2M
 * (`GET /oidc/.well-known/oauth-authorization-server`).
 */
export function registerOidcDiscovery(server: PlatformServer): void {
  server.route("GET", "/oidc/.well-known/oauth-authorization-server", ({ req }) => {
    const base = `http://${req.headers.host}`;
    return {
      issuer: `${base}/oidc`,
      authorization_endpoint: `${base}/oidc/v1/authorize`,
      token_endpoint: `${base}/oidc/v1/token`,
      grant_types_supported: ["client_credentials", "authorization_code", "refresh_token"],
    };
  });
}
