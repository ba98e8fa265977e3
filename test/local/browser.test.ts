import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { useLocalStack } from "../support/local-rig.js";

const CHROMIUM = "/usr/bin/chromium";
const TOKEN_TTL_S = 3;

/**
 * A person in a real browser: opens the one URL `local up` prints, signs in at the stand-in's login page,
 * lands on the (fake) MetaMCP frontend already signed in to MetaMCP (real better-auth, our injected module)
 * as that local user, follows its redirects, and never leaves the app's origin. A second local user is
 * another MetaMCP user; identity headers the browser forges change nothing.
 */
describe("a person's browser through the local Apps proxy", () => {
  const stack = useLocalStack("browser");
  let printedUrl: string;
  let appOrigin: string;
  let browser: Browser;
  const redirects: { from: string; status: number; location: string }[] = [];

  const newPage = async (): Promise<Page> => {
    const context = await browser.newContext();
    const page = await context.newPage();
    page.on("response", (r) => {
      if (r.status() >= 300 && r.status() < 400)
        redirects.push({ from: r.url(), status: r.status(), location: r.headers().location ?? "" });
    });
    return page;
  };
  const signIn = async (page: Page, name: string, email: string) => {
    await page.fill("#name", name);
    await page.fill("#email", email);
    await Promise.all([page.waitForURL((u) => u.origin === appOrigin), page.click("#sign-in")]);
  };

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) return;
    const up = await stack.cli([
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(stack.port),
      "--token-ttl",
      String(TOKEN_TTL_S),
    ]);
    expect(up.exitCode, up.stderr).toBe(0);
    printedUrl = /Open (\S+) in your browser/.exec(up.stdout)?.[1] ?? "";
    appOrigin = new URL(printedUrl).origin;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
  });

  it.skipIf(!existsSync(CHROMIUM))(
    existsSync(CHROMIUM)
      ? "open the printed URL → sign in → the app, redirects followed on the proxy's origin, across token expiry"
      : `skipped: no chromium at ${CHROMIUM} (.ci/run installs Debian's chromium)`,
    async () => {
      expect(printedUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const page = await newPage();
      await page.goto(printedUrl);
      // No session: the stand-in's login page (another origin, as the workspace is).
      expect(page.url()).toContain("/login.html");
      expect(new URL(page.url()).origin).not.toBe(appOrigin);
      await signIn(page, "Ada Lovelace", "ada@example.com");
      // `/` → Next-like 307 to `/en/` (absolute, internal origin in the app's answer) → still here.
      await page.waitForURL(`${appOrigin}/en/`);
      expect(await page.textContent("#who")).toBe("ada@example.com");
      // One sign-in: the first page is already MetaMCP's, signed in as the workspace identity.
      expect(await page.textContent("#user")).toBe("ada@example.com");

      // A private page (locale redirect, then MetaMCP's session check) stays on the proxy's origin, signed in.
      await Promise.all([page.waitForURL(`${appOrigin}/en/api-keys`), page.click("#api-keys")]);
      expect(await page.textContent("#user")).toBe("ada@example.com");
      // MetaMCP's own login page is no stop for a signed-in identity: on to where it was going.
      await page.goto(`${appOrigin}/en/login?callbackUrl=%2Fmcp-servers`);
      await page.waitForURL(`${appOrigin}/en/mcp-servers`);
      expect(await page.locator("#login-form").count()).toBe(0);
      const adaId = await page.textContent("#user-id");
      expect(adaId).toMatch(/\S/);

      // A client's own copy of an identity header never reaches the app.
      const seen = await page.evaluate(async () => {
        const r = await fetch("/metamcp/headers", {
          headers: { "x-forwarded-email": "mallory@example.com", "x-real-ip": "6.6.6.6" },
        });
        return (await r.json()) as Record<string, string>;
      });
      expect(seen["x-forwarded-email"]).toBe("ada@example.com");
      expect(seen["x-forwarded-preferred-username"]).toBe("Ada Lovelace");
      expect(seen["x-real-ip"]).toBe("127.0.0.1");
      expect(seen["x-forwarded-host"]).toBe(new URL(appOrigin).host);
      expect(seen["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
      expect(seen.cookie ?? "").not.toContain("__databricks_app_session");

      // The session outlives the OAuth tokens of its time (Databricks tokens last an hour, here 3 s).
      const earlier = await stack.tokenOf();
      await waitFor(
        async () =>
          (
            await fetch(`${appOrigin}/metamcp/health`, {
              headers: { authorization: `Bearer ${earlier}` },
              redirect: "manual",
            })
          ).status === 302
            ? true
            : undefined,
        { timeoutMs: (TOKEN_TTL_S + 5) * 1000, what: "a token issued now to expire" },
      );
      await page.goto(`${appOrigin}/en/`);
      expect(page.url()).toBe(`${appOrigin}/en/`);
      expect(await page.textContent("#who")).toBe("ada@example.com");

      // A second person, in their own browser context, is another local user.
      const other = await newPage();
      await other.goto(printedUrl);
      await signIn(other, "Grace Hopper", "grace@example.com");
      await other.waitForURL(`${appOrigin}/en/`);
      expect(await other.textContent("#who")).toBe("grace@example.com");
      expect(await other.textContent("#user")).toBe("grace@example.com");
      expect(await other.textContent("#user-id")).not.toBe(adaId);
      expect(await other.textContent("#user-id")).toMatch(/\S/);

      // A forged X-Forwarded-Email from the browser changes nothing: the stand-in's proxy sets the header.
      await other.context().setExtraHTTPHeaders({
        "x-forwarded-email": "ada@example.com",
        "x-metamcp-identity-secret": "guess",
      });
      await other.goto(`${appOrigin}/en/mcp-servers`);
      expect(await other.textContent("#who")).toBe("grace@example.com");
      expect(await other.textContent("#user")).toBe("grace@example.com");
      await other.context().setExtraHTTPHeaders({});

      // Sign-out as MetaMCP's UI does it (authClient.signOut(), then location.href = "/login"): the workspace
      // session is the real one, so the login page leads straight back in, with a new MetaMCP session.
      const sessionId = () =>
        other.evaluate(
          async () =>
            ((await (await fetch("/api/auth/get-session")).json()) as { session?: { id: string } } | null)
              ?.session?.id,
        );
      const before = await sessionId();
      await other.evaluate(async () => {
        await fetch("/api/auth/sign-out", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{}",
        });
        (globalThis as unknown as { location: { href: string } }).location.href = "/login";
      });
      await other.waitForURL(`${appOrigin}/en/`);
      expect(await other.textContent("#user")).toBe("grace@example.com");
      const after = await sessionId();
      expect(after).toBeDefined();
      expect(after).not.toBe(before);

      // Every redirect seen: from the app's origin to the app's origin (or relative), or to the login page
      // and back through /.auth/callback.
      expect(redirects.length).toBeGreaterThanOrEqual(5);
      const offOrigin = redirects.filter((r) => new URL(r.location, r.from).origin !== appOrigin);
      expect(offOrigin.length, "the sign-ins went through the login page").toBeGreaterThan(0);
      for (const r of redirects) {
        const target = new URL(r.location, r.from);
        if (target.origin !== appOrigin) {
          expect(target.pathname, JSON.stringify(r)).toBe("/login.html");
          expect(target.searchParams.get("redirect_uri")).toBe(`${appOrigin}/.auth/callback`);
        }
      }
    },
  );
});
