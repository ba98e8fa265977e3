import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { freePort } from "../../src/local/postgres.js";
import { createLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import { ensureSchema, runMigrations, searchPathOption } from "../../src/runtime/database.js";
import { createRouter, type Router } from "../../src/runtime/router.js";
import {
  applyEmailSignupDefault,
  backendSeparatesSsoSignup,
  emailSignupSetting,
  OUR_SIGNUP_DESCRIPTION,
} from "../../src/runtime/upstream-settings.js";
import { createFakeAppTree } from "../support/fake-app-tree.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";

/**
 * The part that creates MetaMCP users and sessions, against REAL better-auth 1.4.2 (MetaMCP v2.4.22's) with
 * its real drizzle adapter on MetaMCP's tables in an embedded PostgreSQL, as the Lakebase-like role: the fake
 * tree's backend carries OUR injected module, wired as the databricks-identity patch wires it, and mounts
 * /api/auth as upstream does. Requests are what our router sends (the per-start secret + the proxy's headers).
 */
const SCHEMA = "metamcp_app";
const SECRET = "a".repeat(64);
const SESSION = "/api/auth/databricks-identity/callback/session";

describe("Databricks identity → MetaMCP user and session (real better-auth, real PostgreSQL)", () => {
  let work: string;
  let pgs: LakebaseLikePostgres;
  let backend: ChildProcess;
  let base: string;
  let db: pg.Client;
  let frontend: ChildProcess;
  let router: Router;
  let app: string;
  const warnings: string[] = [];
  let output = "";
  const password = "role-password-1";

  const signIn = (headers: Record<string, string>) =>
    fetch(`${base}${SESSION}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: "{}",
    });
  const identity = (email: string, name?: string, user?: string) => ({
    "x-metamcp-identity-secret": SECRET,
    "x-forwarded-email": email,
    ...(name ? { "x-forwarded-preferred-username": name } : {}),
    ...(user ? { "x-forwarded-user": user } : {}),
  });
  const cookieOf = (res: Response) => {
    const set = res.headers.getSetCookie();
    const c = set.find((s) => s.startsWith("better-auth.session_token="));
    return c ? c.split(";")[0]! : undefined;
  };
  const sessionUser = async (cookie: string) => {
    const r = await fetch(`${base}/api/auth/get-session`, { headers: { cookie } });
    return ((await r.json()) as { user?: { id: string; email: string; name: string } } | null)?.user;
  };
  const setConfig = (id: string, value: string) =>
    db.query(
      `INSERT INTO config (id, value) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value`,
      [id, value],
    );

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "mmdb-identity-"));
    createFakeAppTree(path.join(work, "app"));
    pgs = await startLakebaseLikePostgres();
    await pgs.setPassword(password, 3600);
    db = new pg.Client({ connectionString: pgs.roleUrl(password), options: searchPathOption(SCHEMA) });
    await db.connect();
    await ensureSchema(db, SCHEMA);
    await runMigrations(db, {
      migrationsFolder: path.join(work, "app/metamcp/apps/backend/drizzle"),
      schema: SCHEMA,
      log: createLogger({ json: true, tag: "test" }),
    });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    backend = spawn(process.execPath, ["dist/index.js"], {
      cwd: path.join(work, "app/metamcp/apps/backend"),
      env: {
        PATH: process.env.PATH,
        PORT: String(port),
        DATABASE_URL: pgs.roleUrl(password),
        PGOPTIONS: searchPathOption(SCHEMA),
        BETTER_AUTH_SECRET: "b".repeat(64),
        APP_URL: base,
        METAMCP_IDENTITY_SECRET: SECRET,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    backend.stdout?.on("data", (d) => {
      output += String(d);
    });
    backend.stderr?.on("data", (d) => {
      output += String(d);
    });
    await waitFor(
      async () => ((await fetch(`${base}/health`).catch(() => undefined))?.ok ? true : undefined),
      { timeoutMs: 60_000, what: "the fake backend" },
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n${output}`);
    });
    // MetaMCP's frontend (fake, checking sessions as upstream's middleware does) and OUR router in front.
    const frontendPort = await freePort();
    frontend = spawn(process.execPath, ["server.js"], {
      cwd: path.join(work, "app/metamcp/apps/frontend"),
      env: {
        PATH: process.env.PATH,
        PORT: String(frontendPort),
        HOSTNAME: "127.0.0.1",
        FAKE_BACKEND_PORT: String(port),
      },
      stdio: "ignore",
    });
    await waitFor(
      async () =>
        (await fetch(`http://127.0.0.1:${frontendPort}/en/`).catch(() => undefined))?.ok ? true : undefined,
      { timeoutMs: 30_000, what: "the fake frontend" },
    );
    router = createRouter({
      backendPort: port,
      frontendPort,
      publicUrl: () => base,
      identitySecret: SECRET,
      warn: (m) => warnings.push(m),
      // This test plays the Apps proxy from 127.0.0.1 (test/runtime/router.test.ts tries the other callers).
      trustedProxyAddresses: ["127.0.0.1"],
    });
    router.ready = true;
    const routerPort = await freePort();
    await new Promise<void>((r) => router.server.listen(routerPort, "127.0.0.1", () => r()));
    app = `http://127.0.0.1:${routerPort}`;
  }, 120_000);

  afterAll(async () => {
    await router?.close(100);
    frontend?.kill("SIGTERM");
    backend?.kill("SIGTERM");
    await db?.end().catch(() => {});
    await pgs?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("first visit creates the user (no password, a databricks account) and a session; the second reuses it", async () => {
    const first = await signIn(identity("Ada@Example.com", "Ada Lovelace", "1001@ws"));
    expect(first.status, await first.clone().text()).toBe(200);
    const body = (await first.json()) as { user: { id: string; email: string; name: string } };
    expect(body.user).toMatchObject({ email: "ada@example.com", name: "Ada Lovelace" });
    const cookie = cookieOf(first);
    expect(cookie).toBeDefined();
    expect(first.headers.getSetCookie()).toHaveLength(1); // upstream's mount keeps only the last Set-Cookie
    expect(await sessionUser(cookie!)).toMatchObject({ id: body.user.id, email: "ada@example.com" });

    const users = await db.query("SELECT id, name, email, email_verified FROM users WHERE email = $1", [
      "ada@example.com",
    ]);
    expect(users.rows).toEqual([
      { id: body.user.id, name: "Ada Lovelace", email: "ada@example.com", email_verified: true },
    ]);
    const accounts = await db.query(
      "SELECT provider_id, account_id, password FROM accounts WHERE user_id = $1",
      [body.user.id],
    );
    expect(accounts.rows).toEqual([{ provider_id: "databricks", account_id: "1001@ws", password: null }]);

    const second = await signIn(identity("ada@example.com", "Ada Lovelace", "1001@ws"));
    expect(second.status).toBe(200);
    expect(((await second.json()) as { user: { id: string } }).user.id).toBe(body.user.id);
    expect(cookieOf(second)).not.toBe(cookie);
    expect((await db.query("SELECT count(*)::int AS n FROM users")).rows[0].n).toBe(1);
    expect(
      (await db.query("SELECT count(*)::int AS n FROM sessions WHERE user_id = $1", [body.user.id])).rows[0]
        .n,
    ).toBe(2);
    expect((await db.query("SELECT count(*)::int AS n FROM accounts")).rows[0].n).toBe(1);
  });

  it("a second identity gets its own user; no user name → the email's local part", async () => {
    const res = await signIn(identity("grace@example.com"));
    expect(res.status).toBe(200);
    const user = ((await res.json()) as { user: { id: string; name: string } }).user;
    expect(user.name).toBe("grace");
    const ada = await db.query("SELECT id FROM users WHERE email = 'ada@example.com'");
    expect(user.id).not.toBe(ada.rows[0].id);
    expect((await sessionUser(cookieOf(res)!))?.email).toBe("grace@example.com");
  });

  it("without the router's secret nobody is signed in and nothing is created", async () => {
    const before = (await db.query("SELECT count(*)::int AS n FROM users")).rows[0].n;
    for (const headers of <Record<string, string>[]>[
      { "x-forwarded-email": "mallory@example.com" },
      { ...identity("mallory@example.com"), "x-metamcp-identity-secret": "b".repeat(64) },
      { ...identity("mallory@example.com"), "x-metamcp-identity-secret": "short" },
      { "x-metamcp-identity-secret": SECRET },
    ]) {
      const res = await signIn(headers);
      expect(res.status).toBe(401);
      expect(((await res.json()) as { message: string }).message).toContain("no trusted Databricks identity");
      expect(cookieOf(res)).toBeUndefined();
    }
    expect((await db.query("SELECT count(*)::int AS n FROM users")).rows[0].n).toBe(before);
  });

  it("MetaMCP's switches: DISABLE_SIGNUP stops email sign-up, not the identity; DISABLE_SSO_SIGNUP stops new identities", async () => {
    onTestFinished(async () => {
      await db.query("DELETE FROM config WHERE id IN ('DISABLE_SIGNUP', 'DISABLE_SSO_SIGNUP')");
    });
    await setConfig("DISABLE_SIGNUP", "true");
    const email = await fetch(`${base}/api/auth/sign-up/email`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: base },
      body: JSON.stringify({ email: "eve@example.com", password: "correct-horse-1", name: "Eve" }),
    });
    // better-auth 1.4 turns the hook's error into its generic answer (as real MetaMCP v2.4.22 shows it).
    expect(email.status).toBe(422);
    expect(await email.text()).toContain("FAILED_TO_CREATE_USER");
    expect(
      (await db.query("SELECT count(*)::int AS n FROM users WHERE email = 'eve@example.com'")).rows[0].n,
    ).toBe(0);
    expect((await signIn(identity("linus@example.com"))).status).toBe(200);

    await setConfig("DISABLE_SSO_SIGNUP", "true");
    const refused = await signIn(identity("newcomer@example.com"));
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { message: string }).message).toBe(
      "MetaMCP refused to create a user for newcomer@example.com: New user registration via SSO/OAuth is currently disabled.",
    );
    expect(
      (await db.query("SELECT count(*)::int AS n FROM users WHERE email = 'newcomer@example.com'")).rows[0].n,
    ).toBe(0);
    // Someone who already has a user still gets in.
    expect((await signIn(identity("ada@example.com"))).status).toBe(200);
  });

  it("an existing email/password user of that email is the identity's user, linked once", async () => {
    const up = await fetch(`${base}/api/auth/sign-up/email`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: base },
      body: JSON.stringify({ email: "joan@example.com", password: "correct-horse-1", name: "Joan" }),
    });
    expect(up.status, await up.clone().text()).toBe(200);
    const id = ((await up.json()) as { user: { id: string } }).user.id;
    for (let i = 0; i < 2; i++) {
      const res = await signIn(identity("joan@example.com", "Joan Clarke"));
      expect(((await res.json()) as { user: { id: string } }).user.id).toBe(id);
    }
    const providers = await db.query(
      "SELECT provider_id FROM accounts WHERE user_id = $1 ORDER BY provider_id",
      [id],
    );
    expect(providers.rows.map((r) => r.provider_id)).toEqual(["credential", "databricks"]);
  });

  it("findOrCreateIdentityUser and trustedIdentity (what MCP requests use), in process, through better-auth's hooks", async () => {
    const dist = path.join(work, "app/metamcp/apps/backend/dist");
    process.env.DATABASE_URL = pgs.roleUrl(password);
    process.env.PGOPTIONS = searchPathOption(SCHEMA);
    process.env.BETTER_AUTH_SECRET = "b".repeat(64);
    process.env.APP_URL = base;
    process.env.METAMCP_IDENTITY_SECRET = SECRET;
    await import(pathToFileURL(path.join(dist, "auth.mjs")).href);
    const mod = (await import(pathToFileURL(path.join(dist, "databricks-identity.mjs")).href)) as {
      trustedIdentity(h: unknown): { email: string; name: string; databricksUserId: string | null } | null;
      findOrCreateIdentityUser(
        i: { email: string; name: string; databricksUserId: string | null },
        ctxPath?: string,
      ): Promise<{
        id: string;
        email: string;
      }>;
    };
    // Read once and gone: `${METAMCP_IDENTITY_SECRET}` in a server's env cannot pick it up.
    expect(process.env.METAMCP_IDENTITY_SECRET).toBeUndefined();
    expect(mod.trustedIdentity({ "x-forwarded-email": "x@example.com" })).toBeNull();
    expect(
      mod.trustedIdentity(
        new Headers({ "x-forwarded-email": "X@Example.com", "x-metamcp-identity-secret": SECRET }),
      ),
    ).toEqual({ email: "x@example.com", name: "x", databricksUserId: null });
    const who = mod.trustedIdentity({
      "x-forwarded-email": "mcp-client@example.com",
      "x-forwarded-user": "77@ws",
      "x-metamcp-identity-secret": SECRET,
    })!;
    const created = await mod.findOrCreateIdentityUser(who, "/mcp");
    expect(created.email).toBe("mcp-client@example.com");
    expect((await mod.findOrCreateIdentityUser(who)).id).toBe(created.id);
    const acc = await db.query("SELECT provider_id, account_id FROM accounts WHERE user_id = $1", [
      created.id,
    ]);
    expect(acc.rows).toEqual([{ provider_id: "databricks", account_id: "77@ws" }]);
    await setConfig("DISABLE_SSO_SIGNUP", "true");
    await expect(
      mod.findOrCreateIdentityUser({ email: "late@example.com", name: "late", databricksUserId: null }),
    ).rejects.toThrow(/New user registration via SSO\/OAuth is currently disabled/);
    await db.query("DELETE FROM config WHERE id = 'DISABLE_SSO_SIGNUP'");
  });
  it("email/password sign-up off by default: MetaMCP's own switch set once, an admin's choice kept, `on` takes ours back", async () => {
    onTestFinished(async () => {
      await db.query("DELETE FROM config WHERE id = 'DISABLE_SIGNUP'");
    });
    expect(emailSignupSetting({})).toBe("off");
    expect(emailSignupSetting({ METAMCP_EMAIL_SIGNUP: "on" })).toBe("on");
    expect(backendSeparatesSsoSignup(path.join(work, "app/metamcp/apps/backend"))).toBe(true);
    expect(backendSeparatesSsoSignup(path.join(work, "nowhere"))).toBe(false);
    const row = async () =>
      (await db.query("SELECT value, description FROM config WHERE id = 'DISABLE_SIGNUP'")).rows[0];

    // A release with one switch for every user: left alone (it would lock workspace identities out).
    expect(await applyEmailSignupDefault(db, SCHEMA, "off", false)).toBe("one-switch");
    expect(await row()).toBeUndefined();
    expect(await applyEmailSignupDefault(db, SCHEMA, "off", true)).toBe("disabled");
    expect(await row()).toEqual({ value: "true", description: OUR_SIGNUP_DESCRIPTION });
    // Email sign-up now refused by MetaMCP itself; identities still get in.
    const email = await fetch(`${base}/api/auth/sign-up/email`, {
      method: "POST",
      headers: { "content-type": "application/json", origin: base },
      body: JSON.stringify({ email: "form@example.com", password: "correct-horse-1", name: "Form" }),
    });
    expect(email.status).toBe(422);
    expect((await signIn(identity("after-default@example.com"))).status).toBe(200);
    expect(await applyEmailSignupDefault(db, SCHEMA, "off", true)).toBe("kept");
    expect(await applyEmailSignupDefault(db, SCHEMA, "on", true)).toBe("opened");
    expect(await row()).toBeUndefined();

    // An admin saved the switch in MetaMCP's settings (upstream writes its own description): never ours to undo.
    await db.query(
      "INSERT INTO config (id, value, description) VALUES ('DISABLE_SIGNUP', 'false', 'Whether new user signup is disabled')",
    );
    expect(await applyEmailSignupDefault(db, SCHEMA, "off", true)).toBe("kept");
    expect(await applyEmailSignupDefault(db, SCHEMA, "on", true)).toBe("untouched");
    expect((await row()).value).toBe("false");
    expect(await applyEmailSignupDefault(db, "no_such_schema", "off", true)).toBe("no-config");
  });

  describe("through our router: the first page is already signed in", () => {
    // What the Apps proxy adds to every request of a signed-in person.
    const proxy = (email: string, name: string) => ({
      "x-forwarded-email": email,
      "x-forwarded-preferred-username": name,
      "x-forwarded-user": `${name.length}@ws`,
    });
    const page = async (p: string, headers: Record<string, string>) => {
      const res = await fetch(`${app}${p}`, { headers, redirect: "manual" });
      const html = await res.text();
      return {
        res,
        html,
        user: /<p id='user'>([^<]*)<\/p>/.exec(html)?.[1],
        cookie: cookieOf(res),
      };
    };

    it("a private page on the first visit: answered signed in as the proxy's identity, cookie handed to the browser", async () => {
      const first = await page("/en/mcp-servers", proxy("hedy@example.com", "Hedy Lamarr"));
      expect(first.res.status).toBe(200);
      expect(first.user).toBe("hedy@example.com");
      expect(first.cookie).toBeDefined();
      // The browser now holds that session: next pages need no new one.
      const again = await page("/en/api-keys", {
        ...proxy("hedy@example.com", "Hedy Lamarr"),
        cookie: first.cookie!,
      });
      expect(again.user).toBe("hedy@example.com");
      expect(again.res.headers.getSetCookie()).toEqual([]);
      expect((await db.query("SELECT name FROM users WHERE email = 'hedy@example.com'")).rows).toEqual([
        { name: "Hedy Lamarr" },
      ]);
    });

    it("a cookie of another identity never wins: the proxy's identity gets its own session", async () => {
      const hedy = await page("/en/mcp-servers", proxy("hedy@example.com", "Hedy Lamarr"));
      const other = await page("/en/mcp-servers", {
        ...proxy("alan@example.com", "Alan Turing"),
        cookie: hedy.cookie!,
      });
      expect(other.user).toBe("alan@example.com");
      expect(other.cookie).toBeDefined();
      expect(other.cookie).not.toBe(hedy.cookie);
    });

    it("MetaMCP's login page sends a signed-in identity on to where it was going (same origin only)", async () => {
      const login = await page("/en/login?callbackUrl=%2Fapi-keys", proxy("hedy@example.com", "Hedy Lamarr"));
      expect(login.res.status).toBe(302);
      expect(login.res.headers.get("location")).toBe("/api-keys");
      expect(login.cookie).toBeDefined();
      for (const evil of ["//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com"]) {
        const r = await page(
          `/login?callbackUrl=${encodeURIComponent(evil)}`,
          proxy("hedy@example.com", "Hedy Lamarr"),
        );
        expect(r.res.headers.get("location")).toBe("/");
      }
    });

    it("sign-out (as MetaMCP's UI does it) then /login: a new session of the same identity, no redirect loop", async () => {
      const hedy = proxy("hedy@example.com", "Hedy Lamarr");
      const first = await page("/en/mcp-servers", hedy);
      expect(first.user).toBe("hedy@example.com");
      // authClient.signOut(): upstream's mount passes on only the LAST Set-Cookie, so the browser keeps the
      // dead session cookie; then `window.location.href = "/login"`.
      const out = await fetch(`${app}/api/auth/sign-out`, {
        method: "POST",
        headers: { ...hedy, cookie: first.cookie!, origin: base, "content-type": "application/json" },
        body: "{}",
      });
      expect(out.status).toBe(200);
      const dead = first.cookie!;
      expect(await sessionUser(dead)).toBeUndefined();
      const login = await page("/login", { ...hedy, cookie: dead });
      expect(login.res.status).toBe(302);
      expect(login.cookie).toBeDefined();
      expect(login.cookie).not.toBe(dead);
      // Any page with the dead cookie is signed in again too (the router forgot it at sign-out).
      const again = await page("/en/mcp-servers", { ...hedy, cookie: dead });
      expect(again.res.status).toBe(200);
      expect(again.user).toBe("hedy@example.com");
    });

    it("without the proxy's identity nothing is signed in: MetaMCP's own login, as upstream", async () => {
      const r = await page("/en/mcp-servers", {});
      expect(r.res.status).toBe(307);
      expect(r.res.headers.get("location")).toContain("/en/login?callbackUrl=");
      const login = await page("/en/login", {});
      expect(login.html).toContain("id='login-form'");
      // A client's own copy of the secret header never reaches MetaMCP.
      const seen = await fetch(`${app}/metamcp/headers`, {
        headers: { "x-metamcp-identity-secret": SECRET },
      });
      expect(((await seen.json()) as Record<string, string>)["x-metamcp-identity-secret"]).toBeUndefined();
    });

    it("static files and API calls are forwarded untouched (no sign-in round trip)", async () => {
      const before = (await db.query("SELECT count(*)::int AS n FROM sessions")).rows[0].n;
      await fetch(`${app}/favicon.ico`, { headers: proxy("hedy@example.com", "Hedy Lamarr") });
      await fetch(`${app}/_next/static/x`, { headers: proxy("hedy@example.com", "Hedy Lamarr") });
      const echoed = await fetch(`${app}/metamcp/headers`, {
        headers: proxy("hedy@example.com", "Hedy Lamarr"),
      });
      // The backend sees the proxy's identity with the router's stamp: MCP requests can trust it.
      expect(((await echoed.json()) as Record<string, string>)["x-metamcp-identity-secret"]).toBe(SECRET);
      expect((await db.query("SELECT count(*)::int AS n FROM sessions")).rows[0].n).toBe(before);
    });

    it("a refused sign-in (SSO sign-up disabled) leaves MetaMCP's login, with the reason in the app's log", async () => {
      await setConfig("DISABLE_SSO_SIGNUP", "true");
      onTestFinished(async () => {
        await db.query("DELETE FROM config WHERE id = 'DISABLE_SSO_SIGNUP'");
      });
      const r = await page("/en/mcp-servers", proxy("stranger@example.com", "Stranger"));
      expect(r.res.status).toBe(307);
      expect(r.res.headers.get("location")).toContain("/en/login");
      expect(warnings.join("\n")).toContain(
        "could not sign stranger@example.com in to MetaMCP (403): MetaMCP refused to create a user for stranger@example.com: New user registration via SSO/OAuth is currently disabled.",
      );
      expect(warnings.join("\n")).not.toContain(SECRET);
    });
  });
});
