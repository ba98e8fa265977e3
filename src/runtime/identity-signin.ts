import type { IncomingHttpHeaders, IncomingMessage } from "node:http";

/**
 * One sign-in (docs/identity.md): a person who opens the app is already signed in by the Apps proxy, which
 * tells us who they are (X-Forwarded-Email & co.). Before a page request reaches MetaMCP's frontend, the
 * router makes sure the browser holds a MetaMCP session of THAT identity; if not, it asks the patched
 * backend (our better-auth endpoint, which trusts the identity only with the per-start secret) to find or
 * create the user and open a session, puts the new session cookie into the request it forwards (so the
 * first page is already signed in) and hands the Set-Cookie to the browser with the answer.
 * A cookie of another identity (someone else signed in before in this browser, or a leftover) never wins.
 */

/** The header our router stamps on requests that carry the Apps proxy's identity (docs/identity.md). */
export const IDENTITY_SECRET_HEADER = "x-metamcp-identity-secret";

/**
 * Who vouches for the identity headers. MetaMCP trusts `X-Forwarded-Email` & co. only with the per-start
 * secret only we and the backend know: stdio MCP servers MetaMCP runs in the same container can reach the
 * backend port directly and must not be able to claim an identity. So any copy a client sent is dropped,
 * and ours is added when the request carries the proxy's identity (the Apps proxy sets X-Forwarded-Email
 * and drops client-sent copies; the local stand-in's proxy does the same).
 */
export function stampIdentitySecret(headers: IncomingHttpHeaders, secret: string | undefined): void {
  delete headers[IDENTITY_SECRET_HEADER];
  const email = headers["x-forwarded-email"];
  if (secret && typeof email === "string" && email.trim() !== "") headers[IDENTITY_SECRET_HEADER] = secret;
}

/** Our better-auth endpoint (overlay/apps/backend/src/databricks-identity.ts SESSION_PATH, under /api/auth). */
export const IDENTITY_SESSION_PATH = "/api/auth/databricks-identity/callback/session";
/**
 * Where a person goes whose address belongs to a MetaMCP account nobody proved (made with the email/password
 * form, not linked to the identity): our backend's page says what they and the admin can do
 * (overlay/…/databricks-identity.ts UNPROVEN_PAGE_PATH; docs/identity.md "An account nobody proved").
 */
export const UNPROVEN_ACCOUNT_PAGE = "/api/auth/databricks-identity/unproven-account";
const UNPROVEN_CODE = "DATABRICKS_IDENTITY_UNPROVEN_ACCOUNT";
/** better-auth's session cookie; `__Secure-` prefixed when the app's URL is https (always on Databricks). */
const SESSION_COOKIE = /^(?:__Secure-)?better-auth\.session_token$/;
/** How long a session cookie → email answer is reused before asking the backend again. */
const CACHE_MS = 60_000;
const CACHE_MAX = 10_000;

export interface IdentitySignInResult {
  /** Set-Cookie values for the browser (a new session), empty when its cookie was already right. */
  setCookies: string[];
  /** Where to send the browser instead of forwarding (the login page, for a signed-in identity). */
  redirect?: string;
}

export interface IdentitySignInOptions {
  backendPort: number;
  /** Warnings (a refused sign-in, an unreachable backend): never a secret or a cookie in them. */
  warn?: (message: string) => void;
}

/** Pages of MetaMCP's frontend: upstream's middleware skips `/_next`, API paths and anything with a dot. */
export function isPageRequest(method: string | undefined, pathname: string): boolean {
  if (method !== "GET" && method !== "HEAD") return false;
  return !pathname.startsWith("/_next") && !pathname.includes(".");
}

/** `/login`, `/en/login`, `/zh/login` (MetaMCP's sign-in page, with or without its locale). */
export function isLoginPage(pathname: string): boolean {
  return /^\/(?:[a-z]{2}\/)?login\/?$/.test(pathname);
}

/** A same-origin path to continue to (MetaMCP's `callbackUrl`), or `/`: never another origin. */
export function safeContinuation(callbackUrl: string | null): string {
  if (!callbackUrl?.startsWith("/") || /^\/[/\\]/.test(callbackUrl)) return "/";
  return callbackUrl;
}

function parseCookies(header: string | undefined): { name: string; value: string }[] {
  return (header ?? "")
    .split(";")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const i = p.indexOf("=");
      return i < 0 ? { name: p, value: "" } : { name: p.slice(0, i), value: p.slice(i + 1) };
    });
}

/** The session cookie's value the browser sent, if any. */
export function sessionCookieValue(header: string | undefined): string | undefined {
  return parseCookies(header).find((c) => SESSION_COOKIE.test(c.name))?.value;
}

/** The request's Cookie header with its session cookie(s) replaced by `name=value`. */
export function withSessionCookie(header: string | undefined, name: string, value: string): string {
  const others = parseCookies(header).filter((c) => !SESSION_COOKIE.test(c.name));
  return [...others.map((c) => `${c.name}=${c.value}`), `${name}=${value}`].join("; ");
}

const first = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

export function createIdentitySignIn(options: IdentitySignInOptions) {
  const backend = `http://127.0.0.1:${options.backendPort}`;
  const known = new Map<string, { email: string; until: number }>();
  const remember = (cookie: string, email: string) => {
    if (known.size >= CACHE_MAX) known.delete(known.keys().next().value as string);
    known.set(cookie, { email, until: Date.now() + CACHE_MS });
  };

  /**
   * Whose session this cookie is, as the backend says (upstream's middleware asks the same way). `fresh`:
   * not from the cache (on the login page, where MetaMCP sends a browser whose session it does not accept).
   */
  const sessionEmail = async (
    headers: IncomingHttpHeaders,
    cookie: string,
    fresh: boolean,
  ): Promise<string | undefined> => {
    const hit = known.get(cookie);
    if (!fresh && hit && hit.until > Date.now()) return hit.email;
    known.delete(cookie);
    const res = await fetch(`${backend}/api/auth/get-session`, {
      headers: { cookie: headers.cookie ?? "" },
      signal: AbortSignal.timeout(10_000),
    });
    const body = res.ok
      ? ((await res.json().catch(() => null)) as {
          user?: { email?: string; emailVerified?: unknown };
        } | null)
      : null;
    // Only a session of a user whose address was proved counts as the identity's: a session of an account
    // anyone could have made with the email form (and planted in this browser) never does.
    const email = body?.user?.emailVerified === true ? body.user.email?.toLowerCase() : undefined;
    if (email) remember(cookie, email);
    return email;
  };

  /**
   * Opens a session for the identity on the request; mutates its Cookie header; returns Set-Cookie, or why not:
   * `unproven` when an account nobody proved holds the address (the backend refused, on purpose).
   */
  const signIn = async (
    headers: IncomingHttpHeaders,
    email: string,
  ): Promise<string[] | "unproven" | undefined> => {
    const forwarded: Record<string, string> = { "content-type": "application/json" };
    for (const name of [
      IDENTITY_SECRET_HEADER,
      "x-forwarded-email",
      "x-forwarded-user",
      "x-forwarded-preferred-username",
      "x-forwarded-for",
      "x-real-ip",
      "user-agent",
    ]) {
      const v = first(headers[name]);
      if (v) forwarded[name] = v;
    }
    const res = await fetch(`${backend}${IDENTITY_SESSION_PATH}`, {
      method: "POST",
      headers: forwarded,
      body: "{}",
      signal: AbortSignal.timeout(15_000),
    });
    if (!res.ok) {
      const body = (await res.json().catch(() => ({}))) as { message?: string; code?: string };
      const unproven = res.status === 409 && body.code === UNPROVEN_CODE;
      options.warn?.(
        `could not sign ${email} in to MetaMCP (${res.status}): ${body.message ?? res.statusText}; ${unproven ? `the person is shown ${UNPROVEN_ACCOUNT_PAGE} (MetaMCP's login page still works for them)` : "MetaMCP shows its own login"}`,
      );
      return unproven ? "unproven" : undefined;
    }
    await res.arrayBuffer().catch(() => {});
    const setCookies = res.headers.getSetCookie();
    for (const set of setCookies) {
      const [pair] = set.split(";");
      const i = pair?.indexOf("=") ?? -1;
      if (!pair || i < 0 || !SESSION_COOKIE.test(pair.slice(0, i))) continue;
      const name = pair.slice(0, i);
      const value = pair.slice(i + 1);
      headers.cookie = withSessionCookie(first(headers.cookie), name, value);
      remember(value, email);
    }
    return setCookies;
  };

  return {
    /**
     * MetaMCP's sign-out (`POST /api/auth/sign-out`) ends the session in its database; forget what we knew of
     * the cookie. (Upstream's /api/auth mount passes on only the last Set-Cookie of an answer, so the browser
     * may keep sending the dead cookie: it must not pass for signed in.)
     */
    forget(cookieHeader: string | undefined): void {
      const cookie = sessionCookieValue(cookieHeader);
      if (cookie) known.delete(cookie);
    },
    /**
     * For a page request that carries the proxy's identity (and our stamp, so the router vouched for it):
     * make its session that identity's. Undefined when there is nothing to do or it could not be done
     * (the request then goes on as it is, and MetaMCP shows its own login).
     */
    async prepare(
      req: IncomingMessage,
      pathname: string,
      search: string,
    ): Promise<IdentitySignInResult | undefined> {
      const email = first(req.headers["x-forwarded-email"])?.trim().toLowerCase();
      if (!email || !req.headers[IDENTITY_SECRET_HEADER] || !isPageRequest(req.method, pathname))
        return undefined;
      try {
        const cookie = sessionCookieValue(first(req.headers.cookie));
        let setCookies: string[] = [];
        const login = isLoginPage(pathname);
        if (!cookie || (await sessionEmail(req.headers, cookie, login)) !== email) {
          const fresh = await signIn(req.headers, email);
          // The login page stays reachable: there the account's owner proves it with its password.
          if (fresh === "unproven")
            return login ? undefined : { setCookies: [], redirect: UNPROVEN_ACCOUNT_PAGE };
          if (!fresh) return undefined;
          setCookies = fresh;
        }
        if (login)
          return {
            setCookies,
            redirect: safeContinuation(new URLSearchParams(search).get("callbackUrl")),
          };
        return { setCookies };
      } catch (err) {
        options.warn?.(`could not sign ${email} in to MetaMCP: ${(err as Error).message}`);
        return undefined;
      }
    },
  };
}

export type IdentitySignIn = ReturnType<typeof createIdentitySignIn>;
