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
        METAMCP_BACKEND_PORT: String(port),
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
        METAMCP_BACKEND_PORT: String(port),
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

  describe("no takeover through email sign-up (an account nobody proved)", () => {
    const PASSWORD = "correct-horse-1";
    const signUp = (email: string, password = PASSWORD) =>
      fetch(`${base}/api/auth/sign-up/email`, {
        method: "POST",
        headers: { "content-type": "application/json", origin: base },
        body: JSON.stringify({ email, password, name: email.split("@")[0] }),
      });
    /** MetaMCP's login form, sent through our router: it carries the sender's own workspace identity. */
    const passwordSignIn = (email: string, asIdentity?: string, password = PASSWORD) =>
      fetch(`${base}/api/auth/sign-in/email`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          origin: base,
          ...(asIdentity ? identity(asIdentity) : {}),
        },
        body: JSON.stringify({ email, password }),
      });
    const userRow = async (email: string) =>
      (
        await db.query(
          "SELECT u.id, u.email_verified, array_agg(a.provider_id ORDER BY a.provider_id) AS providers FROM users u JOIN accounts a ON a.user_id = u.id WHERE u.email = $1 GROUP BY u.id",
          [email],
        )
      ).rows[0] as { id: string; email_verified: boolean; providers: string[] } | undefined;

    it("sign-up on: Mallory's password account for carol@ never gets Carol's identity; her password opens only her own account", async () => {
      const up = await signUp("carol@example.com");
      expect(up.status, await up.clone().text()).toBe(200);
      const squat = ((await up.json()) as { user: { id: string } }).user.id;
      // Carol opens the app for the first time.
      const carol = await signIn(identity("carol@example.com", "Carol", "3003@ws"));
      expect(carol.status).toBe(409);
      const refusal = (await carol.json()) as { code: string; message: string };
      expect(refusal.code).toBe("DATABRICKS_IDENTITY_UNPROVEN_ACCOUNT");
      expect(refusal.message).toContain(`MetaMCP already has a user carol@example.com (id ${squat})`);
      expect(refusal.message).toContain(
        `UPDATE users SET email = 'unclaimed-${squat}@invalid' WHERE id = '${squat}' AND email_verified = false`,
      );
      expect(cookieOf(carol)).toBeUndefined();
      // Nothing of Mallory's account changed: no link, not proved, no session but her own sign-up's.
      expect(await userRow("carol@example.com")).toEqual({
        id: squat,
        email_verified: false,
        providers: ["credential"],
      });
      expect(
        (await db.query("SELECT count(*)::int AS n FROM sessions WHERE user_id = $1", [squat])).rows[0].n,
      ).toBe(1);
      // Mallory signs in with her password (with her own identity, as the proxy sends it): her account, unlinked.
      const mallory = await passwordSignIn("carol@example.com", "mallory@example.com");
      expect(mallory.status).toBe(200);
      expect((await userRow("carol@example.com"))?.providers).toEqual(["credential"]);
      // The MCP path (findOrCreateIdentityUser) refuses the same way.
      const user = await fetch(`${base}/api/auth/databricks-identity/callback/user`, {
        method: "POST",
        headers: { "content-type": "application/json", ...identity("carol@example.com") },
        body: "{}",
      });
      expect(user.status).toBe(409);
    });

    it("sign-up off: Mallory cannot make the account; Carol gets her own user", async () => {
      onTestFinished(async () => {
        await db.query("DELETE FROM config WHERE id = 'DISABLE_SIGNUP'");
      });
      await setConfig("DISABLE_SIGNUP", "true");
      expect((await signUp("dora@example.com")).status).toBe(422);
      const dora = await signIn(identity("dora@example.com", "Dora"));
      expect(dora.status).toBe(200);
      expect(await userRow("dora@example.com")).toMatchObject({
        email_verified: true,
        providers: ["databricks"],
      });
      // A sign-up after Carol came (sign-up open again) finds the address taken.
      await db.query("DELETE FROM config WHERE id = 'DISABLE_SIGNUP'");
      expect((await signUp("dora@example.com")).status).toBe(422);
      expect((await passwordSignIn("dora@example.com", "mallory@example.com")).status).not.toBe(200);
    });

    it("Carol's own password account (made before the identity): one password sign-in with her identity claims it; then the password is off", async () => {
      const up = await signUp("erin@example.com");
      const id = ((await up.json()) as { user: { id: string } }).user.id;
      expect((await signIn(identity("erin@example.com"))).status).toBe(409);
      // Someone else's identity with her password proves nothing.
      expect((await passwordSignIn("erin@example.com", "mallory@example.com")).status).toBe(200);
      expect((await userRow("erin@example.com"))?.providers).toEqual(["credential"]);
      // Her own identity + her password: hers.
      const proof = await passwordSignIn("erin@example.com", "Erin@Example.com");
      expect(proof.status, await proof.clone().text()).toBe(200);
      expect(await userRow("erin@example.com")).toEqual({
        id,
        email_verified: true,
        providers: ["credential", "databricks"],
      });
      const again = await signIn(identity("erin@example.com"));
      expect(again.status).toBe(200);
      expect(((await again.json()) as { user: { id: string } }).user.id).toBe(id);
      // From now on the password is no way in (the right one included); the credential row stays.
      const refused = await passwordSignIn("erin@example.com", "mallory@example.com");
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { message: string }).message).toContain(
        "erin@example.com signs in with its Databricks workspace identity",
      );
      expect((await userRow("erin@example.com"))?.providers).toEqual(["credential", "databricks"]);
    });

    it("upgrade: an account whose email was proved is linked; one an earlier version linked is signed in and its password turned off", async () => {
      const up = await signUp("frank@example.com");
      const frank = ((await up.json()) as { user: { id: string } }).user.id;
      await db.query("UPDATE users SET email_verified = true WHERE id = $1", [frank]);
      const linked = await signIn(identity("frank@example.com"));
      expect(linked.status).toBe(200);
      expect(((await linked.json()) as { user: { id: string } }).user.id).toBe(frank);
      expect((await userRow("frank@example.com"))?.providers).toEqual(["credential", "databricks"]);

      // What the earlier version left: an email/password user linked without proof.
      const old = await signUp("gina@example.com");
      const gina = ((await old.json()) as { user: { id: string } }).user.id;
      await db.query(
        "INSERT INTO accounts (id, account_id, provider_id, user_id) VALUES ('old-link', 'gina@example.com', 'databricks', $1)",
        [gina],
      );
      const res = await signIn(identity("gina@example.com"));
      expect(res.status).toBe(200);
      expect(((await res.json()) as { user: { id: string } }).user.id).toBe(gina);
      expect(await userRow("gina@example.com")).toEqual({
        id: gina,
        email_verified: true,
        providers: ["credential", "databricks"],
      });
      expect((await passwordSignIn("gina@example.com", "mallory@example.com")).status).toBe(403);
    });
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

    it("an account nobody proved: its session (even planted in the browser) is not the identity's; the person is told what to do; the owner proves it at the login page", async () => {
      const up = await fetch(`${base}/api/auth/sign-up/email`, {
        method: "POST",
        headers: { "content-type": "application/json", origin: base },
        body: JSON.stringify({ email: "ivy@example.com", password: "correct-horse-1", name: "Ivy" }),
      });
      const squatCookie = cookieOf(up)!;
      expect(squatCookie).toBeDefined();
      const ivy = proxy("ivy@example.com", "Ivy");
      for (const headers of [ivy, { ...ivy, cookie: squatCookie }]) {
        const r = await page("/en/mcp-servers", headers);
        expect(r.res.status).toBe(302);
        expect(r.res.headers.get("location")).toBe("/api/auth/databricks-identity/unproven-account");
        expect(r.cookie).toBeUndefined();
        expect(r.user).toBeUndefined();
      }
      const explained = await page("/api/auth/databricks-identity/unproven-account", ivy);
      expect(explained.res.status).toBe(409);
      expect(explained.html).toContain("An account for ivy@example.com exists already");
      expect(explained.html).toContain('href="/login"');
      expect(warnings.join("\n")).toContain("UPDATE users SET email = 'unclaimed-");
      // The login page is still MetaMCP's form (where the owner proves it), not a loop.
      const login = await page("/en/login", ivy);
      expect(login.res.status).toBe(200);
      expect(login.html).toContain("id='login-form'");
      // The owner signs in with the password, through the router (which vouches for her identity).
      const proof = await fetch(`${app}/api/auth/sign-in/email`, {
        method: "POST",
        headers: { ...ivy, "content-type": "application/json", origin: base },
        body: JSON.stringify({ email: "ivy@example.com", password: "correct-horse-1" }),
      });
      expect(proof.status).toBe(200);
      const after = await page("/en/mcp-servers", { ...ivy, cookie: cookieOf(proof)! });
      expect(after.res.status).toBe(200);
      expect(after.user).toBe("ivy@example.com");
      expect(after.res.headers.getSetCookie()).toEqual([]);
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
