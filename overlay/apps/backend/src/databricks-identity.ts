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
import { APIError, createAuthEndpoint } from "better-auth/api";
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
}
interface InternalAdapter {
  findUserByEmail(
    email: string,
    options?: { includeAccounts: boolean },
  ): Promise<{ user: Row; accounts: { providerId: string }[] } | null>;
  createOAuthUser(user: object, account: object, ctx?: unknown): Promise<{ user: Row } | null>;
  linkAccount(account: object, ctx?: unknown): Promise<unknown>;
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

/** Finds the user by email (lower-cased), or creates it with no password, linked to a `databricks` account. */
async function ensureUser(ctx: EndpointCtx, identity: DatabricksIdentity): Promise<Row> {
  const adapter = ctx.context.internalAdapter;
  const account = {
    providerId: DATABRICKS_PROVIDER_ID,
    accountId: identity.databricksUserId ?? identity.email,
  };
  const link = async (found: { user: Row; accounts: { providerId: string }[] }) => {
    if (!found.accounts.some((a) => a.providerId === DATABRICKS_PROVIDER_ID))
      await adapter.linkAccount({ ...account, userId: found.user.id }, ctx);
    return found.user;
  };
  const found = await adapter.findUserByEmail(identity.email, { includeAccounts: true });
  if (found) return link(found);
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
    if (again) return link(again);
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

/** The better-auth plugin: two endpoints under /api/auth that only our router (or this process) can use. */
export function databricksIdentity() {
  return {
    id: "databricks-identity",
    endpoints: {
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
