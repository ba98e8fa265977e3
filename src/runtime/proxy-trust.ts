import type { IncomingHttpHeaders } from "node:http";
import { isIP } from "node:net";
import os from "node:os";

/**
 * Who may say who a caller is (docs/identity.md, "The identity counts only when the Apps proxy sent it").
 * On Databricks the Apps proxy is outside the app's container: its connections to the app port come from
 * an address that is not the container's. Every process the app runs (a stdio MCP server, a tool told to
 * fetch a URL) reaches the port from inside: over loopback or from one of the container's own addresses.
 * So identity headers count only on a connection from elsewhere; from inside they are removed before
 * anything reads them, whatever they say. Under `local` the stand-in proxy connects from an address named in
 * METAMCP_TRUSTED_PROXY_ADDRESSES (127.0.0.2 on Linux), the one exception to the rule.
 */
export const IDENTITY_HEADERS = [
  "x-forwarded-email",
  "x-forwarded-user",
  "x-forwarded-preferred-username",
  "x-forwarded-access-token",
] as const;

/** `::ffff:127.0.0.1` → `127.0.0.1`; IPv6 zone ids dropped; lower case. */
export function normalizeAddress(address: string | undefined): string {
  let a = (address ?? "").trim().toLowerCase();
  const zone = a.indexOf("%");
  if (zone >= 0) a = a.slice(0, zone);
  if (a.startsWith("::ffff:") && isIP(a.slice(7)) === 4) a = a.slice(7);
  return a;
}

function isLoopbackOrUnspecified(a: string): boolean {
  if (isIP(a) === 4) return a.startsWith("127.") || a === "0.0.0.0";
  return a === "::1" || a === "::" || a === "";
}

export interface PeerTrust {
  /** Whether identity headers on a connection from `remoteAddress` count. */
  trusts(remoteAddress: string | undefined): boolean;
}

const INTERFACES_REFRESH_MS = 30_000;

/**
 * `ownAddresses` is this host's interface addresses (a parameter for tests); re-read every 30 s, so an
 * address the container gains later is counted as its own too.
 */
export function createPeerTrust(
  options: {
    trustedProxyAddresses?: readonly string[];
    ownAddresses?: () => readonly string[];
    now?: () => number;
  } = {},
): PeerTrust {
  const trusted = new Set((options.trustedProxyAddresses ?? []).map(normalizeAddress));
  const readOwn =
    options.ownAddresses ??
    (() =>
      Object.values(os.networkInterfaces())
        .flat()
        .map((i) => i?.address ?? ""));
  const now = options.now ?? Date.now;
  let own = new Set<string>();
  let readAt = Number.NEGATIVE_INFINITY;
  const ownAddresses = () => {
    if (now() - readAt > INTERFACES_REFRESH_MS) {
      own = new Set(readOwn().map(normalizeAddress));
      readAt = now();
    }
    return own;
  };
  return {
    trusts(remoteAddress) {
      const a = normalizeAddress(remoteAddress);
      if (trusted.has(a)) return true;
      if (a === "" || isLoopbackOrUnspecified(a)) return false;
      return !ownAddresses().has(a);
    },
  };
}

/** Removes every identity header; true when there was one (a caller from inside claimed an identity). */
export function dropIdentityHeaders(headers: IncomingHttpHeaders): boolean {
  let had = false;
  for (const h of IDENTITY_HEADERS) {
    if (headers[h] !== undefined) {
      had = true;
      delete headers[h];
    }
  }
  return had;
}
