/**
 * metamcp-databricks: the Databricks identity in MetaMCP (docs/identity.md). OUR code, copied into the
 * MetaMCP tree by `prepare` (overlay/) and wired into apps/backend/src/auth.ts by the `databricks-identity`
 * patch: `plugins: [..., databricksIdentity()]` and `export const auth = bindDatabricksIdentity(betterAuth(…))`.
 *
 * Who may assert an identity: the Apps proxy (on Databricks) or the local stand-in's proxy sets
 * `X-Forwarded-Email` / `-User` / `-Preferred-Username`; our router in front of MetaMCP stamps
 * `x-metamcp-identity-secret` (a random value per app start, given only to this backend process as
 * METAMCP_IDENTITY_SECRET) on requests that carry them, and drops any copy a client sent. Anything else
 * that reaches the backend port directly (MetaMCP runs stdio MCP servers in the same container) does not
 * know the secret, so its identity headers are ignored.
 *
 * Written against better-auth's public plugin API as it is in every MetaMCP release we support
 * (better-auth 1.2.9 up to v2.4.20, 1.4.2 in v2.4.21/22, 1.4.18 on main).
 */
import { timingSafeEqual } from "node:crypto";
import { APIError, createAuthEndpoint, createAuthMiddleware } from "better-auth/api";
import { setSessionCookie } from "better-auth/cookies";

export const IDENTITY_SECRET_HEADER = "x-metamcp-identity-secret";

/**
 * Read once, then removed from process.env: MetaMCP expands `${NAME}` in a stdio server's configured
 * environment from process.env (lib/metamcp/utils.ts resolveEnvVariables), which would hand the secret to
 * anyone allowed to configure a server.
 */
const IDENTITY_SECRET = process.env.METAMCP_IDENTITY_SECRET;
delete process.env.METAMCP_IDENTITY_SECRET;
/** The account row that links a MetaMCP user to the workspace identity. */
export const DATABRICKS_PROVIDER_ID = "databricks";
/**
 * Under /api/auth. Both paths contain `/callback/`: upstream's `databaseHooks.user.create.before`
 * (v2.4.14+) counts a creation there as an SSO sign-up, so MetaMCP's "disable SSO sign-up" setting
 * governs it and "disable sign-up" (email/password) does not.
 */
export const SESSION_PATH = "/databricks-identity/callback/session";
export const USER_PATH = "/databricks-identity/callback/user";
/** The page our router sends a person to whose email belongs to an account nobody proved (below). */
export const UNPROVEN_PAGE_PATH = "/databricks-identity/unproven-account";
/** The error code of that refusal (the router tells it apart from other refusals by it). */
export const UNPROVEN_CODE = "DATABRICKS_IDENTITY_UNPROVEN_ACCOUNT";

export interface DatabricksIdentity {
  /** Lower-cased. */
  email: string;
  /** X-Forwarded-Preferred-Username, else the email's local part. */
  name: string;
  /** X-Forwarded-User (the workspace user id), when the proxy sent it. */
  databricksUserId: string | null;
}

export interface IdentityUser {
  id: string;
  email: string;
  name: string;
}

type HeaderBag = Headers | { get(name: string): string | null } | Record<string, unknown>;

function header(headers: HeaderBag | undefined | null, name: string): string | undefined {
  if (!headers) return undefined;
  const get = (headers as { get?: unknown }).get;
  const raw =
    typeof get === "function"
      ? (get as (n: string) => string | null).call(headers, name)
      : (headers as Record<string, unknown>)[name];
  const value = Array.isArray(raw) ? raw[0] : raw;
  return typeof value === "string" && value.trim() !== "" ? value.trim() : undefined;
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

// The part of an email address before the @, for a display name when the proxy gave no user name.
const localPart = (email: string) => email.split("@")[0] || email;

/**
 * The identity the Apps proxy asserted for this request, or null when the request does not carry our
 * router's per-start secret (then nobody vouches for the X-Forwarded-* headers: they are ignored).
 * Accepts fetch `Headers` or Node's lower-cased header record.
 */
export function trustedIdentity(
  headers: HeaderBag | undefined | null,
  secret: string | undefined = IDENTITY_SECRET,
): DatabricksIdentity | null {
  if (!secret) return null;
  const given = header(headers, IDENTITY_SECRET_HEADER);
  if (!given || !sameSecret(given, secret)) return null;
  const email = header(headers, "x-forwarded-email")?.toLowerCase();
  if (!email?.includes("@")) return null;
  return {
    email,
    name: header(headers, "x-forwarded-preferred-username") ?? localPart(email),
    databricksUserId: header(headers, "x-forwarded-user") ?? null,
  };
}

/** The request headers that let our own endpoint trust `identity` (for server-side calls). */
function identityHeaders(identity: DatabricksIdentity, secret: string): Headers {
  const h = new Headers();
  h.set(IDENTITY_SECRET_HEADER, secret);
  h.set("x-forwarded-email", identity.email);
  h.set("x-forwarded-preferred-username", identity.name);
  if (identity.databricksUserId) h.set("x-forwarded-user", identity.databricksUserId);
  return h;
}

// better-auth's internal adapter, as far as we use it. Its signatures differ between the releases MetaMCP
// pins: 1.2.x passes the endpoint context explicitly (createOAuthUser(user, account, ctx), linkAccount(account,
// ctx), createSession(userId, ctx, dontRememberMe)); 1.4.x reads it from async local storage
// (createOAuthUser(user, account), createSession(userId, dontRememberMe)). Extra arguments are ignored.
interface Row {
  id: string;
  email: string;
  name: string;
  emailVerified?: boolean | null;
}
interface InternalAdapter {
  findUserByEmail(
    email: string,
    options?: { includeAccounts: boolean },
  ): Promise<{ user: Row; accounts: { providerId: string }[] } | null>;
  createOAuthUser(user: object, account: object, ctx?: unknown): Promise<{ user: Row } | null>;
  linkAccount(account: object, ctx?: unknown): Promise<unknown>;
  updateUser(userId: string, data: object, ctx?: unknown): Promise<unknown>;
  createSession: (...args: unknown[]) => Promise<{ token: string; expiresAt: Date } | null>;
}
interface EndpointCtx {
  headers?: Headers;
  context: { internalAdapter: InternalAdapter };
  json(value: unknown): unknown;
}

function message(err: unknown): string {
  if (err instanceof APIError)
    return String((err.body as { message?: string } | undefined)?.message ?? err.message);
  return err instanceof Error ? err.message : String(err);
}

const pick = (u: Row): IdentityUser => ({ id: u.id, email: u.email, name: u.name });

type Found = { user: Row; accounts: { providerId: string }[] };
const isLinked = (found: Found) => found.accounts.some((a) => a.providerId === DATABRICKS_PROVIDER_ID);

/**
 * No takeover through email sign-up (docs/identity.md "An account nobody proved"): MetaMCP's email/password
 * form lets anyone make an account for any address and never checks it (upstream has no verification mail:
 * `emailVerified` stays false). Such an account is not the identity's: whoever made it knows its password
 * and would read everything the real owner puts there. So a workspace identity signs into an existing user
 * only when that user is already linked to the identity (`databricks` account) or someone proved its email
 * (`emailVerified`, e.g. upstream's OIDC sign-in). Nothing of that account is changed or deleted here.
 */
function unproven(identity: DatabricksIdentity, user: Row): APIError {
  return new APIError("CONFLICT", {
    code: UNPROVEN_CODE,
    message:
      `MetaMCP already has a user ${identity.email} (id ${user.id}) made with the email/password form, and nobody proved that address is theirs, ` +
      "so the workspace identity is not signed in to it. If it is yours: sign in once with its password on MetaMCP's login page " +
      "(it is then linked to your workspace identity). If it is not: an admin renames it away, keeping its data: " +
      `UPDATE users SET email = 'unclaimed-${user.id}@invalid' WHERE id = '${user.id}' AND email_verified = false ` +
      "(in the app's schema, METAMCP_SCHEMA); the next visit then creates the identity's own user",
  });
}

/** Makes `found` the identity's user (link once; the identity proves the address): only when that is safe. */
async function claim(ctx: EndpointCtx, identity: DatabricksIdentity, found: Found): Promise<Row> {
  const adapter = ctx.context.internalAdapter;
  const linked = isLinked(found);
  if (!linked && found.user.emailVerified !== true) throw unproven(identity, found.user);
  if (!linked)
    await adapter.linkAccount(
      {
        providerId: DATABRICKS_PROVIDER_ID,
        accountId: identity.databricksUserId ?? identity.email,
        userId: found.user.id,
      },
      ctx,
    );
  // Linked by an earlier version (which linked without asking): the workspace vouches for the address now,
  // and our router accepts only sessions of proved users (identity-signin.ts).
  if (found.user.emailVerified !== true)
    await adapter.updateUser(found.user.id, { emailVerified: true }, ctx);
  return found.user;
}

/** Finds the identity's user by email (lower-cased), or creates it with no password, linked to a `databricks` account. */
async function ensureUser(ctx: EndpointCtx, identity: DatabricksIdentity): Promise<Row> {
  const adapter = ctx.context.internalAdapter;
  const account = {
    providerId: DATABRICKS_PROVIDER_ID,
    accountId: identity.databricksUserId ?? identity.email,
  };
  const found = await adapter.findUserByEmail(identity.email, { includeAccounts: true });
  if (found) return claim(ctx, identity, found);
  try {
    const created = await adapter.createOAuthUser(
      { email: identity.email, name: identity.name, emailVerified: true, image: null },
      account,
      ctx,
    );
    if (!created?.user) throw new Error("a MetaMCP hook refused to create the user");
    return created.user;
  } catch (err) {
    // Two first visits at once: the other one created the user (email is unique).
    const again = await adapter.findUserByEmail(identity.email, { includeAccounts: true }).catch(() => null);
    if (again) return claim(ctx, identity, again);
    throw new APIError("FORBIDDEN", {
      message: `MetaMCP refused to create a user for ${identity.email}: ${message(err)}`,
    });
  }
}

function requireIdentity(ctx: EndpointCtx): DatabricksIdentity {
  const identity = trustedIdentity(ctx.headers);
  if (!identity)
    throw new APIError("UNAUTHORIZED", {
      message: "no trusted Databricks identity on this request (only the app's own router may assert one)",
    });
  return identity;
}

const PASSWORD_SIGN_IN = "/sign-in/email";
interface HookCtx extends EndpointCtx {
  path?: string;
  body?: { email?: unknown };
  context: EndpointCtx["context"] & { newSession?: { user: Row } | null };
}

/**
 * Password sign-in of a user the workspace identity signs into is refused. On Databricks everyone who opens
 * the app is already signed in by the workspace, so the password is only a second way in: one another person
 * with CAN_USE can guess, phish or (for an account made before its owner came) simply know. The password
 * stays in the database (we did not make it); MetaMCP's "disable basic auth" switch turns off the rest.
 */
async function refusePasswordOfIdentityUser(c: unknown): Promise<{ context: object }> {
  const ctx = c as HookCtx;
  const email = typeof ctx.body?.email === "string" ? ctx.body.email.trim().toLowerCase() : "";
  if (email) {
    const found = await ctx.context.internalAdapter.findUserByEmail(email, { includeAccounts: true });
    if (found && isLinked(found))
      throw new APIError("FORBIDDEN", {
        code: "DATABRICKS_IDENTITY_PASSWORD_OFF",
        message: `${email} signs in with its Databricks workspace identity: open the app from the workspace (password sign-in is off for this user)`,
      });
  }
  return { context: {} };
}

/**
 * The owner's proof: a password sign-in that comes with the workspace identity of the same address (our
 * router's secret on it) shows that whoever holds that identity also knows the account's password, so the
 * account is theirs: it is linked to the identity and its address counts as proved from now on.
 */
async function claimOnPasswordSignIn(c: unknown): Promise<Record<string, never>> {
  const ctx = c as HookCtx;
  const user = ctx.context.newSession?.user;
  const identity = trustedIdentity(ctx.headers);
  if (!user || !identity || identity.email !== user.email.toLowerCase()) return {};
  const found = await ctx.context.internalAdapter.findUserByEmail(identity.email, { includeAccounts: true });
  if (found && found.user.id === user.id && !isLinked(found)) {
    await ctx.context.internalAdapter.linkAccount(
      {
        providerId: DATABRICKS_PROVIDER_ID,
        accountId: identity.databricksUserId ?? identity.email,
        userId: user.id,
      },
      ctx,
    );
    if (found.user.emailVerified !== true)
      await ctx.context.internalAdapter.updateUser(user.id, { emailVerified: true }, ctx);
  }
  return {};
}

const ESCAPES: Record<string, string> = {
  "<": "&lt;",
  ">": "&gt;",
  "&": "&amp;",
  '"': "&quot;",
  "'": "&#39;",
};
const html = (s: string) => s.replace(/[<>&"']/g, (ch) => ESCAPES[ch] ?? ch);

/** What a person whose address belongs to an account nobody proved sees (our router sends them here). */
function unprovenPage(email: string | undefined): string {
  const who = email ? html(email) : "your address";
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>MetaMCP: an account for ${who} exists already</title></head>
<body style="font-family:sans-serif;max-width:42rem;margin:3rem auto;line-height:1.5">
<h1>An account for ${who} exists already</h1>
<p>Someone made a MetaMCP account for <b>${who}</b> with the email/password sign-up form, and nobody has proved
that this address is theirs. To keep what you put into MetaMCP from landing in an account someone else may
hold the password of, your workspace identity is <b>not</b> signed in to it.</p>
<ul>
<li><b>If you made that account:</b> <a id="password-sign-in" href="/login">sign in once with its password</a>.
It is then linked to your workspace identity, and you will not need the password again.</li>
<li><b>If you did not:</b> ask the app's admin to rename that account away (its data is kept). The app's log
has the exact statement (search it for ${who}). Your next visit then creates your own account.</li>
</ul>
</body></html>`;
}

/** The better-auth plugin: endpoints under /api/auth that only our router (or this process) can use, and hooks. */
export function databricksIdentity() {
  return {
    id: "databricks-identity",
    hooks: {
      before: [
        {
          matcher: (ctx: { path?: string }) => ctx.path === PASSWORD_SIGN_IN,
          handler: createAuthMiddleware(refusePasswordOfIdentityUser),
        },
      ],
      after: [
        {
          matcher: (ctx: { path?: string }) => ctx.path === PASSWORD_SIGN_IN,
          handler: createAuthMiddleware(claimOnPasswordSignIn),
        },
      ],
    },
    endpoints: {
      /** Explains the refusal above to the person (our router redirects their page requests here). */
      databricksIdentityUnproven: createAuthEndpoint(UNPROVEN_PAGE_PATH, { method: "GET" }, async (c) => {
        const ctx = c as unknown as EndpointCtx;
        return new Response(unprovenPage(trustedIdentity(ctx.headers)?.email), {
          status: 409,
          headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" },
        });
      }),
      /** Signs the proxy's identity in: finds or creates the user, opens a session, sets its cookie. */
      databricksIdentitySession: createAuthEndpoint(SESSION_PATH, { method: "POST" }, async (c) => {
        const ctx = c as unknown as EndpointCtx;
        const identity = requireIdentity(ctx);
        const user = await ensureUser(ctx, identity);
        const create = ctx.context.internalAdapter.createSession;
        // 1.2.x: createSession(userId, ctx, dontRememberMe, …) has 5 parameters; 1.4.x has 4.
        const session =
          create.length >= 5
            ? await create.call(ctx.context.internalAdapter, user.id, ctx, false)
            : await create.call(ctx.context.internalAdapter, user.id, false);
        if (!session) throw new APIError("INTERNAL_SERVER_ERROR", { message: "could not create a session" });
        await setSessionCookie(c as never, { session, user } as never);
        return ctx.json({ user: pick(user) });
      }),
      /** Finds or creates the user only (no session): what findOrCreateIdentityUser calls. */
      databricksIdentityUser: createAuthEndpoint(USER_PATH, { method: "POST" }, async (c) => {
        const ctx = c as unknown as EndpointCtx;
        const user = await ensureUser(ctx, requireIdentity(ctx));
        return ctx.json({ user: pick(user) });
      }),
    },
  };
}

type IdentityApi = {
  databricksIdentityUser(input: { headers: Headers }): Promise<{ user: IdentityUser }>;
};
let boundApi: IdentityApi | undefined;

/** Remembers MetaMCP's better-auth instance (for findOrCreateIdentityUser) and returns it unchanged. */
export function bindDatabricksIdentity<T>(auth: T): T {
  boundApi = (auth as unknown as { api: IdentityApi }).api;
  return auth;
}

/**
 * The MetaMCP user of a trusted identity, created on first sight (no password, `databricks` account), for
 * code outside better-auth's own endpoints (e.g. MCP requests). Runs through our endpoint so better-auth's
 * hooks see an endpoint context whose path contains `/callback/` (an SSO sign-up for upstream's hook).
 * `_ctxPath` is kept for the agreed interface (docs/identity.md): the path is always USER_PATH.
 */
export async function findOrCreateIdentityUser(
  identity: DatabricksIdentity,
  _ctxPath?: string,
): Promise<IdentityUser> {
  const secret = IDENTITY_SECRET;
  if (!boundApi || !secret)
    throw new Error("the Databricks identity is not set up (no better-auth instance bound, or no secret)");
  const result = await boundApi.databricksIdentityUser({ headers: identityHeaders(identity, secret) });
  return result.user;
}
