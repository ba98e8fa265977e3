import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRouter, type Router } from "../../src/runtime/router.js";
import { SIGNUP_OFF_MESSAGE } from "../../src/runtime/signup-guard.js";

/**
 * A person with email sign-up off (the default) tries MetaMCP's email/password sign-up anyway, as Mallory
 * squatting Carol's address would: on releases before v2.4.14 MetaMCP's own switch is left alone (it would
 * refuse workspace identities too), so the router is what refuses it. The backend here answers every
 * request and records what reached it, as better-auth behind Express would.
 */
describe("email sign-up off: the router refuses better-auth's sign-up route on every release", () => {
  let backend: Server;
  const reached: string[] = [];
  const routers: Router[] = [];
  const start = async (emailSignup: "on" | "off") => {
    const router = createRouter({
      backendPort: (backend.address() as AddressInfo).port,
      frontendPort: 1,
      identitySecret: "f".repeat(64),
      trustedProxyAddresses: ["127.0.0.1"],
      emailSignup,
    });
    router.ready = true;
    routers.push(router);
    await new Promise<void>((r) => router.server.listen(0, "127.0.0.1", () => r()));
    return `http://127.0.0.1:${(router.server.address() as AddressInfo).port}`;
  };
  const signUp = (url: string, path: string) =>
    fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-email": "mallory@example.com" },
      body: JSON.stringify({ email: "carol@example.com", password: "hunter22hunter22", name: "Carol" }),
    });

  beforeAll(async () => {
    backend = createServer((req, res) => {
      reached.push(`${req.method} ${req.url}`);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ user: { id: "squat", email: "carol@example.com" } }));
    });
    await new Promise<void>((r) => backend.listen(0, "127.0.0.1", () => r()));
  });
  afterAll(async () => {
    for (const r of routers) await r.close(100);
    backend.close();
  });

  it("off: every spelling is refused with better-auth's error shape and never reaches MetaMCP; sign-in still does", async () => {
    const url = await start("off");
    for (const path of [
      "/api/auth/sign-up/email",
      "/API/Auth/Sign-Up/Email",
      "/api/auth/sign-up/email/",
      "/api/auth//sign-up//email",
      "/api/auth/sign-up/email?callbackURL=%2F",
    ]) {
      const res = await signUp(url, path);
      expect(res.status, path).toBe(403);
      expect(await res.json()).toEqual({ code: "EMAIL_SIGNUP_DISABLED", message: SIGNUP_OFF_MESSAGE });
    }
    expect(reached.filter((r) => /sign-up/i.test(r))).toEqual([]);
    const signIn = await fetch(`${url}/api/auth/sign-in/email`, { method: "POST", body: "{}" });
    expect(signIn.status).toBe(200);
    expect(reached).toContain("POST /api/auth/sign-in/email");
  });

  it("on: the sign-up route is MetaMCP's", async () => {
    const url = await start("on");
    const res = await signUp(url, "/api/auth/sign-up/email");
    expect(res.status).toBe(200);
    expect(reached).toContain("POST /api/auth/sign-up/email");
  });
});
