import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import ts from "typescript";
import { IDENTITY_MODULE_FILE } from "../../src/patches/databricks-identity.js";
import { PROJECT_ROOT } from "./cli.js";

/**
 * The auth-shaped parts of the fake app tree (docs/identity.md), as MetaMCP v2.4.22 has them AFTER our
 * `databricks-identity` patch:
 * - dist/auth.mjs: REAL better-auth (this project's devDependency, the version v2.4.22 pins) with its real
 *   drizzle adapter on MetaMCP's tables (users, sessions, accounts, verifications; migration 0002_auth), the
 *   options of upstream's auth.ts that matter here (APP_URL as baseURL, email/password on, 7-day sessions,
 *   cross-subdomain cookies, the `emailVerified` field) and upstream's `databaseHooks.user.create.before`
 *   (DISABLE_SIGNUP / DISABLE_SSO_SIGNUP from the config table, SSO told apart by `/callback/` in the path),
 *   with `plugins: [databricksIdentity()]` and `bindDatabricksIdentity(...)` as the patch writes them;
 * - dist/databricks-identity.mjs: OUR injected module (overlay/…/databricks-identity.ts), transpiled;
 * - `handleAuth`: /api/auth mounted as upstream's index.ts does it (a web Request from the Node request,
 *   `auth.handler`, then each answer header copied with `res.setHeader`, so of several Set-Cookie only the
 *   last survives, as upstream).
 */

/** MetaMCP's better-auth tables (schema.ts usersTable … verificationsTable), unqualified: search_path decides. */
export const AUTH_MIGRATION = `CREATE TABLE "users" (
\t"id" text PRIMARY KEY NOT NULL,
\t"name" text NOT NULL,
\t"email" text NOT NULL UNIQUE,
\t"email_verified" boolean DEFAULT false NOT NULL,
\t"image" text,
\t"created_at" timestamp with time zone DEFAULT now() NOT NULL,
\t"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sessions" (
\t"id" text PRIMARY KEY NOT NULL,
\t"expires_at" timestamp with time zone NOT NULL,
\t"token" text NOT NULL UNIQUE,
\t"created_at" timestamp with time zone DEFAULT now() NOT NULL,
\t"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
\t"ip_address" text,
\t"user_agent" text,
\t"user_id" text NOT NULL REFERENCES "users"("id") ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE "accounts" (
\t"id" text PRIMARY KEY NOT NULL,
\t"account_id" text NOT NULL,
\t"provider_id" text NOT NULL,
\t"user_id" text NOT NULL REFERENCES "users"("id") ON DELETE cascade,
\t"access_token" text,
\t"refresh_token" text,
\t"id_token" text,
\t"access_token_expires_at" timestamp with time zone,
\t"refresh_token_expires_at" timestamp with time zone,
\t"scope" text,
\t"password" text,
\t"created_at" timestamp with time zone DEFAULT now() NOT NULL,
\t"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "verifications" (
\t"id" text PRIMARY KEY NOT NULL,
\t"identifier" text NOT NULL,
\t"value" text NOT NULL,
\t"expires_at" timestamp with time zone NOT NULL,
\t"created_at" timestamp with time zone DEFAULT now(),
\t"updated_at" timestamp with time zone DEFAULT now()
);
`;

const AUTH_MODULE = `
import { readFileSync } from "node:fs";
import { betterAuth } from "better-auth";
import { drizzleAdapter } from "better-auth/adapters/drizzle";
import { drizzle } from "drizzle-orm/node-postgres";
import { eq } from "drizzle-orm";
import { boolean, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import pg from "pg";
import { bindDatabricksIdentity, databricksIdentity } from "./databricks-identity.mjs";

const ts = (name) => timestamp(name, { withTimezone: true });
const usersTable = pgTable("users", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  email: text("email").notNull().unique(),
  emailVerified: boolean("email_verified").notNull().default(false),
  image: text("image"),
  createdAt: ts("created_at").notNull().defaultNow(),
  updatedAt: ts("updated_at").notNull().defaultNow(),
});
const sessionsTable = pgTable("sessions", {
  id: text("id").primaryKey(),
  expiresAt: ts("expires_at").notNull(),
  token: text("token").notNull().unique(),
  createdAt: ts("created_at").notNull().defaultNow(),
  updatedAt: ts("updated_at").notNull().defaultNow(),
  ipAddress: text("ip_address"),
  userAgent: text("user_agent"),
  userId: text("user_id").notNull(),
});
const accountsTable = pgTable("accounts", {
  id: text("id").primaryKey(),
  accountId: text("account_id").notNull(),
  providerId: text("provider_id").notNull(),
  userId: text("user_id").notNull(),
  accessToken: text("access_token"),
  refreshToken: text("refresh_token"),
  idToken: text("id_token"),
  accessTokenExpiresAt: ts("access_token_expires_at"),
  refreshTokenExpiresAt: ts("refresh_token_expires_at"),
  scope: text("scope"),
  password: text("password"),
  createdAt: ts("created_at").notNull().defaultNow(),
  updatedAt: ts("updated_at").notNull().defaultNow(),
});
const verificationsTable = pgTable("verifications", {
  id: text("id").primaryKey(),
  identifier: text("identifier").notNull(),
  value: text("value").notNull(),
  expiresAt: ts("expires_at").notNull(),
  createdAt: ts("created_at").defaultNow(),
  updatedAt: ts("updated_at").defaultNow(),
});
const configTable = pgTable("config", { id: text("id").primaryKey(), value: text("value").notNull() });

const pool = new pg.Pool(
  process.env.METAMCP_PG_PASSWORD_FILE
    ? { password: () => readFileSync(process.env.METAMCP_PG_PASSWORD_FILE, "utf8").trim(), idleTimeoutMillis: 200 }
    : { connectionString: process.env.DATABASE_URL, idleTimeoutMillis: 200 },
);
pool.on("error", () => {});
const db = drizzle(pool);
const configValue = async (id) => (await db.select().from(configTable).where(eq(configTable.id, id)))[0]?.value;
const configService = {
  isSignupDisabled: async () => (await configValue("DISABLE_SIGNUP")) === "true",
  isSsoSignupDisabled: async () => (await configValue("DISABLE_SSO_SIGNUP")) === "true",
};

export const auth = bindDatabricksIdentity(betterAuth({
  secret: process.env.BETTER_AUTH_SECRET,
  baseURL: process.env.APP_URL,
  database: drizzleAdapter(db, {
    provider: "pg",
    schema: { user: usersTable, session: sessionsTable, account: accountsTable, verification: verificationsTable },
  }),
  trustedOrigins: ["http://localhost", "http://localhost:12008", "http://127.0.0.1", "http://127.0.0.1:12008"],
  plugins: [databricksIdentity()],
  emailAndPassword: { enabled: true, requireEmailVerification: false },
  session: { expiresIn: 60 * 60 * 24 * 7, updateAge: 60 * 60 * 24 },
  user: { additionalFields: { emailVerified: { type: "boolean", defaultValue: false } } },
  advanced: { crossSubDomainCookies: { enabled: true } },
  logger: { level: "error" },
  databaseHooks: {
    user: {
      create: {
        before: async (user, context) => {
          const isSignupDisabled = await configService.isSignupDisabled();
          const isSsoSignupDisabled = await configService.isSsoSignupDisabled();
          const isSso = context?.path?.includes("/callback/") || context?.path?.includes("/oauth/") || context?.path?.includes("/oidc/");
          if (isSso) {
            if (isSsoSignupDisabled) throw new Error("New user registration via SSO/OAuth is currently disabled.");
          } else if (isSignupDisabled) {
            throw new Error("New user registration is currently disabled.");
          }
          return { data: user };
        },
      },
    },
  },
}));

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString("utf8");
  // express.json() then JSON.stringify(req.body), as upstream's mount: no JSON body → no body.
  if (!raw || !String(req.headers["content-type"] ?? "").includes("json")) return undefined;
  return JSON.stringify(JSON.parse(raw));
}

export async function handleAuth(req, res) {
  const url = new URL(req.url, "http://" + req.headers.host);
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (v) headers.set(k, Array.isArray(v) ? v[0] : v);
  const body = req.method !== "GET" && req.method !== "HEAD" ? await readBody(req) : undefined;
  if (body === undefined) headers.delete("content-length");
  const response = await auth.handler(new Request(url.toString(), { method: req.method, headers, body }));
  res.statusCode = response.status;
  response.headers.forEach((value, key) => res.setHeader(key, value));
  res.end(await response.text());
}
`;

/**
 * The frontend redirects as MetaMCP's middleware does on Next 15.4 standalone (measured on v2.4.22): a path
 * without a locale → 307 to `/en<path>`; a private page → the session is checked the way upstream's
 * middleware checks it (GET http://localhost:12009/api/auth/get-session with the browser's cookie only), and
 * without one → 307 to `/en/login?callbackUrl=…`. Each Location is ABSOLUTE and built the way Next builds
 * `request.url` (resolve-routes.js `initUrl`): the scheme from X-Forwarded-Proto, the host `localhost` and the
 * port it listens on. Pages show who the proxy says the user is (#who) and who MetaMCP has signed in (#user);
 * the login page shows MetaMCP's sign-in form (#login-form).
 */
export function identityFrontend(backendPort = 12009): string {
  return String.raw`
import { createServer } from "node:http";
const port = Number(process.env.PORT);
const PUBLIC = new Set(["/login", "/register", "/", "/cors-error"]);
// As upstream's middleware after our frontend-backend-port patch: METAMCP_BACKEND_PORT (which the runtime
// passes to both children), else the port this tree was made for (upstream's 12009).
const backendPort = Number(process.env.METAMCP_BACKEND_PORT) || ${backendPort};
const esc = (s) => String(s ?? "").replace(/[<>&"']/g, "");
async function sessionOf(cookie) {
  try {
    const r = await fetch("http://localhost:" + backendPort + "/api/auth/get-session", { headers: { cookie: cookie ?? "" } });
    return r.ok ? await r.json() : null;
  } catch {
    return null;
  }
}
createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  const proto = String(req.headers["x-forwarded-proto"] ?? "").includes("https") ? "https" : "http";
  const nextOrigin = proto + "://localhost:" + port;
  const redirect = (to) => {
    res.writeHead(307, { location: to });
    res.end();
  };
  const m = /^\/(en|zh)(\/.*)?$/.exec(url.pathname);
  if (!m) return redirect(nextOrigin + "/en" + url.pathname + url.search);
  const rest = m[2] || "/";
  const session = await sessionOf(req.headers.cookie);
  if (!PUBLIC.has(rest) && !session) return redirect(nextOrigin + "/en/login?callbackUrl=" + encodeURIComponent(rest));
  const form = rest === "/login" ? "<form id='login-form'><input name='email'><input name='password' type='password'><button>Sign in</button></form>" : "";
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<!doctype html><html><head><title>frontend " + url.pathname + "</title></head><body>" +
    "<h1 id='page'>frontend " + url.pathname + "</h1><p id='who'>" + esc(req.headers["x-forwarded-email"] ?? "nobody") + "</p>" +
    "<p id='backend-port'>" + backendPort + "</p><p id='user'>" + esc(session?.user?.email ?? "signed out") + "</p><p id='user-id'>" + esc(session?.user?.id ?? "") + "</p>" + form +
    "<a id='api-keys' href='/api-keys'>API keys</a> <a id='servers' href='/en/mcp-servers'>servers</a></body></html>");
}).listen(port, process.env.HOSTNAME, () => console.log("frontend ready"));
process.on("SIGTERM", () => process.exit(0));
`;
}

/** Our injected module as the built backend carries it (transpiled; tsup bundles it upstream). */
export function transpiledIdentityModule(): string {
  const source = readFileSync(path.join(PROJECT_ROOT, "overlay", IDENTITY_MODULE_FILE), "utf8");
  return ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
}

/** Writes the backend's auth module, our module and the auth tables' migration into `backendDir`. */
export function writeAuthFiles(backendDir: string): void {
  mkdirSync(path.join(backendDir, "dist"), { recursive: true });
  mkdirSync(path.join(backendDir, "drizzle"), { recursive: true });
  writeFileSync(path.join(backendDir, "dist/auth.mjs"), AUTH_MODULE);
  writeFileSync(path.join(backendDir, "dist/databricks-identity.mjs"), transpiledIdentityModule());
  writeFileSync(path.join(backendDir, "drizzle/0002_auth.sql"), AUTH_MIGRATION);
}
