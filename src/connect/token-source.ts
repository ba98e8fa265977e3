import { connectWorkspace, oauthToken, type Workspace } from "../databricks/workspace.js";
import { registerSecret } from "../log/secrets.js";

/**
 * Where the bridge gets the bearer token the Apps proxy wants. `token()` is called before every HTTP
 * request and must hand out a token that is still valid (the source refreshes ahead of expiry);
 * `refresh()` is called when the proxy refused the last one anyway and must not return it again.
 */
export interface TokenSource {
  token(): Promise<string>;
  refresh(): Promise<string>;
  /** For logs: where tokens come from (never a token). */
  readonly description: string;
}

/**
 * Tokens from the user's Databricks CLI profile through the official SDK, as `app-health` gets them:
 * a browser-login profile runs `databricks auth token --profile P`, a client-id/secret profile asks
 * `{host}/oidc/v1/token`. The SDK caches the token and fetches a new one 40 s before it expires, so
 * no request leaves with a token about to lapse. A PAT profile fails here: the Apps proxy refuses PATs.
 */
export async function databricksProfileTokens(config: {
  profile: string;
  databricksCli: string;
}): Promise<TokenSource> {
  let ws: Workspace = await connectWorkspace(config);
  await oauthToken(ws);
  return {
    description: `Databricks profile ${config.profile} (${ws.authType})`,
    token: () => oauthToken(ws),
    async refresh() {
      // A new SDK config has an empty cache: the next token is fetched, not the cached one replayed.
      ws = await connectWorkspace(config);
      return oauthToken(ws);
    },
  };
}

/** A token source over a function that mints a fresh token on every call (the local stand-in's). */
export function mintingTokens(
  description: string,
  mint: () => Promise<{ token: string; expiresAt: number }>,
  options: { refreshAheadMs?: number; now?: () => number } = {},
): TokenSource {
  const now = options.now ?? Date.now;
  let current: { token: string; expiresAt: number; mintedAt: number } | undefined;
  let pending: Promise<string> | undefined;
  const fetchNew = (): Promise<string> => {
    // One mint at a time: concurrent requests share it.
    pending ??= mint()
      .then((t) => {
        registerSecret(t.token);
        current = { ...t, mintedAt: now() };
        return t.token;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };
  return {
    description,
    async token() {
      if (current) {
        // Renew 40 s ahead (the SDK's margin), or a quarter of the lifetime for short rehearsal tokens.
        const lifetime = current.expiresAt - current.mintedAt;
        const ahead = Math.min(options.refreshAheadMs ?? 40_000, lifetime / 4);
        if (current.expiresAt - now() > ahead) return current.token;
      }
      return fetchNew();
    },
    refresh: fetchNew,
  };
}
