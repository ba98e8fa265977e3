import type { TokenStore } from "./tokens.js";

/**
 * The token the Apps proxy forwards to an app with user authorization (`X-Forwarded-Access-Token`): the
 * person's own, limited to the scopes the app declares (`user_api_scopes`; "Now GA: … on-behalf-of-user
 * authorization", databricks.com; design §1.2, §7). Without declared scopes the app has no user authorization
 * and gets none. How long the real one lasts is not documented (design Q3): the stand-in's lasts `--token-ttl`
 * and is reused for half of it, so one person's requests carry the same token a while, then a new one.
 */
export function onBehalfOfTokens(
  tokens: Pick<TokenStore, "issue">,
  scopes: readonly string[],
  ttlSeconds: () => number,
  now: () => number = Date.now,
): (email: string) => string | undefined {
  const current = new Map<string, { token: string; expiresAt: number; ttlMs: number }>();
  return (email) => {
    if (scopes.length === 0) return undefined;
    const held = current.get(email);
    if (held && held.expiresAt - now() > held.ttlMs / 2) return held.token;
    const ttl = ttlSeconds();
    const issued = tokens.issue(email, ttl, [...scopes]);
    current.set(email, { token: issued.token, expiresAt: issued.expiresAt, ttlMs: ttl * 1000 });
    return issued.token;
  };
}

/** `--user-scopes genie,unity-catalog`: OAuth scope names, comma-separated; undefined when one is not. */
export function parseUserScopes(value: string): string[] | undefined {
  const scopes = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return scopes.every((s) => /^[a-z][a-z0-9._-]*$/.test(s)) ? scopes : undefined;
}
