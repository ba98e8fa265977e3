import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { isAlive, portFree, useLocalStack } from "../support/local-rig.js";

/**
 * `local` end to end through the real CLI: embedded PostgreSQL, the Databricks stand-in, the Apps proxy
 * and our runtime on a small MetaMCP-shaped app tree (`--no-build`: prepare and build have their own tests).
 */
describe("metamcp-databricks local", () => {
  const stack = useLocalStack("local");
  const cli = (args: string[]) => stack.cli(args);
  const status = async () =>
    JSON.parse((await cli(["--json", "local", "status"])).stdout) as Record<string, never>;

  it("up → health through the proxy (302 without a token) → a row → down → up keeps it → --fresh empties it", async () => {
    const up = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(stack.port),
      "--credential-ttl",
      "3",
    ]);
    expect(up.exitCode, up.stderr).toBe(0);
    const state = JSON.parse(up.stdout) as { appUrl: string; status: string };
    expect(state.status).toBe("healthy");
    expect(state.appUrl).toBe(`http://127.0.0.1:${stack.port}`);
    expect(state).not.toHaveProperty("token");
    const tokenOut = await cli(["local", "token"]);
    expect(tokenOut.exitCode, tokenOut.stderr).toBe(0);
    const token = tokenOut.stdout.trim();
    expect(token).toMatch(/^dapi-local-\w{20,}$/);
    const auth = { authorization: `Bearer ${token}` };

    const anonymous = await fetch(`${state.appUrl}/metamcp/health`, { redirect: "manual" });
    expect(anonymous.status).toBe(302);
    expect(anonymous.headers.get("location")).toMatch(/login/);
    expect((await fetch(`${state.appUrl}/metamcp/health`, { headers: auth })).status).toBe(200);

    expect(
      (await fetch(`${state.appUrl}/metamcp/notes?body=kept`, { method: "POST", headers: auth })).status,
    ).toBe(200);

    // Renewals during the run (3 s credentials, renewed every 1.8 s): every request keeps working.
    const renewed = () =>
      (
        readFileSync(path.join(stack.work, "state/local.log"), "utf8").match(
          /database credential renewed/g,
        ) ?? []
      ).length;
    const failed: number[] = [];
    await waitFor(
      async () => {
        const r = await fetch(`${state.appUrl}/metamcp/fresh`, { headers: auth });
        if (r.status !== 200) failed.push(r.status);
        return renewed() >= 2 ? true : undefined;
      },
      { timeoutMs: 30_000, what: "two credential renewals", intervalMs: 100 },
    );
    expect(failed).toEqual([]);

    const logs = await cli(["local", "logs"]);
    expect(logs.exitCode).toBe(0);
    expect(logs.stdout).toContain("MetaMCP is ready");

    const s1 = await status();
    expect(s1.status).toBe("healthy");
    const pids = s1 as unknown as { supervisorPid: number; appPid: number; pgPid: number };

    const down = await cli(["local", "down"]);
    expect(down.exitCode).toBe(0);
    for (const pid of [pids.supervisorPid, pids.appPid, pids.pgPid]) expect(isAlive(pid)).toBe(false);
    expect(await portFree(stack.port)).toBe(true);
    expect(await portFree(stack.internal.backendPort)).toBe(true);
    expect((await cli(["local", "status"])).exitCode).toBe(5);
    const noToken = await cli(["local", "token"]);
    expect(noToken.exitCode).toBe(5);
    expect(noToken.stdout).toBe("");
    expect(noToken.stderr).toMatch(/not running[\s\S]*local up/);

    const again = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(stack.port),
    ]);
    expect(again.exitCode, again.stderr).toBe(0);
    const token2 = (await cli(["local", "token"])).stdout.trim();
    const notes = await (
      await fetch(`${state.appUrl}/metamcp/notes`, { headers: { authorization: `Bearer ${token2}` } })
    ).json();
    expect(notes).toEqual({ bodies: ["kept"], schema: "metamcp_app" });

    const second = await cli(["local", "up", "--detach", "--no-build", "--port", String(stack.port)]);
    expect(second.exitCode).toBe(2);
    expect(second.stderr).toMatch(/already running/);
    // The supervisor now holds the lock (handed over by the detached parent): the refusal names it.
    expect(second.stderr).toMatch(/\(pid [1-9]\d*\)/);

    expect((await cli(["local", "down"])).exitCode).toBe(0);
    const fresh = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--fresh",
      "--yes",
      "--port",
      String(stack.port),
    ]);
    expect(fresh.exitCode, fresh.stderr).toBe(0);
    const token3 = (await cli(["local", "token"])).stdout.trim();
    const empty = await (
      await fetch(`${state.appUrl}/metamcp/notes`, { headers: { authorization: `Bearer ${token3}` } })
    ).json();
    expect(empty).toEqual({ bodies: [], schema: null });

    // The secrets the app got never reach the log file.
    const secrets = JSON.parse(readFileSync(path.join(stack.work, "state/secrets.json"), "utf8")) as Record<
      string,
      string
    >;
    const log = readFileSync(path.join(stack.work, "state/local.log"), "utf8");
    for (const k of ["betterAuthSecret", "clientSecret", "pgSuperPassword"]) {
      expect(secrets[k], `secrets.json ${k}`).toMatch(/^.{16,}$/);
      expect(log).not.toContain(secrets[k]);
    }
    // Nor does the proxy token: neither the log file nor `up`/`status` output shows it.
    const humanStatus = await cli(["local", "status"]);
    expect(humanStatus.stdout).toContain("`./bin/metamcp-databricks.js local token` prints a fresh one");
    for (const text of [log, fresh.stdout, humanStatus.stdout, JSON.stringify(await status())])
      expect(text).not.toContain(token3);

    // PostgreSQL frozen: `local status` says unhealthy with the app's reason (exit 6), then healthy again.
    const pgPid = (await status()).pgPid as unknown as number;
    process.kill(pgPid, "SIGSTOP");
    try {
      const sick = await waitFor(
        async () => {
          const r = await cli(["local", "status"]);
          return r.exitCode === 6 ? r : undefined;
        },
        { timeoutMs: 90_000, what: "`local status` to report the frozen database" },
      );
      expect(sick.stdout).toContain("status:    unhealthy");
      expect(sick.stdout).toMatch(/health: {4}503 in \d+ ms: cannot open a database connection/);
    } finally {
      process.kill(pgPid, "SIGCONT");
    }
    await waitFor(async () => ((await cli(["local", "status"])).exitCode === 0 ? true : undefined), {
      timeoutMs: 90_000,
      what: "`local status` healthy again",
    });
  });

  it("reports a crash of the app and stops the rest, leaving no process and no port behind", async () => {
    const s = (await status()) as unknown as {
      status: string;
      appPid: number;
      pgPid: number;
      supervisorPid: number;
    };
    expect(s.status).toBe("healthy");
    process.kill(-s.appPid, "SIGKILL");
    await waitFor(() => (isAlive(s.supervisorPid) ? undefined : true), {
      timeoutMs: 30_000,
      what: "the supervisor to stop",
    });
    expect(isAlive(s.pgPid)).toBe(false);
    expect(await portFree(stack.port)).toBe(true);
    const run = JSON.parse(readFileSync(path.join(stack.work, "state/run.json"), "utf8")) as {
      status: string;
      error: string;
    };
    expect(run.status).toBe("failed");
    expect(run.error).toMatch(/the app exited/);
    expect((await cli(["local", "status"])).exitCode).toBe(5);
  });

  it("refuses a port in use with a clear message", async () => {
    const { createServer } = await import("node:net");
    const blocker = createServer().listen(stack.port, "127.0.0.1");
    try {
      const r = await cli(["local", "up", "--no-build", "--port", String(stack.port)]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(`port ${stack.port} \\(the local Apps proxy\\) is already in use by another program`),
      );
    } finally {
      blocker.close();
    }
  });
});

/** Issue 22 item 14: a person signed in at the local login page stays signed in across `down`/`up`. */
describe("local: sign-in kept across down/up", () => {
  const stack = useLocalStack("signin");
  const cli = (args: string[]) => stack.cli(args);

  /** Signs in as a person does (the proxy's redirect, the login form, the callback): the session cookie. */
  async function signIn(appUrl: string, email: string): Promise<{ cookie: string; loginPort: string }> {
    const first = await fetch(`${appUrl}/`, { redirect: "manual" });
    expect(first.status).toBe(302);
    const loginUrl = new URL(first.headers.get("location")!);
    const form = new URLSearchParams({
      email,
      name: email.split("@")[0]!,
      redirect_uri: loginUrl.searchParams.get("redirect_uri")!,
      state: "/",
    });
    const signed = await fetch(new URL("/login.html", loginUrl), {
      method: "POST",
      body: form,
      redirect: "manual",
    });
    expect(signed.status).toBe(302);
    const back = await fetch(signed.headers.get("location")!, { redirect: "manual" });
    const cookie = back.headers.getSetCookie().find((c) => c.startsWith("__databricks_app_session="));
    expect(cookie).toBeDefined();
    return { cookie: cookie!.split(";")[0]!, loginPort: loginUrl.port };
  }

  /** Who the app sees for this browser: its email (X-Forwarded-Email), or "login" when sent to sign in. */
  async function whoIs(appUrl: string, cookie: string): Promise<string> {
    const r = await fetch(`${appUrl}/metamcp/health`, { headers: { cookie }, redirect: "manual" });
    return r.status === 302 ? "login" : String(r.status);
  }

  const loginPortOf = async (appUrl: string) =>
    new URL((await fetch(`${appUrl}/`, { redirect: "manual" })).headers.get("location")!).port;

  it("the login port and the browser's session survive `local down` + `local up`; a taken port is said and replaced", async () => {
    const up = await cli(["--json", "local", "up", "--detach", "--no-build", "--port", String(stack.port)]);
    expect(up.exitCode, up.stderr).toBe(0);
    const appUrl = (JSON.parse(up.stdout) as { appUrl: string }).appUrl;
    const { cookie, loginPort } = await signIn(appUrl, "carol@example.com");
    expect(await whoIs(appUrl, cookie)).toBe("200");

    expect((await cli(["local", "down"])).exitCode).toBe(0);
    const again = await cli(["local", "up", "--detach", "--no-build", "--port", String(stack.port)]);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(await loginPortOf(appUrl)).toBe(loginPort);
    expect(await whoIs(appUrl, cookie)).toBe("200");
    // A made-up cookie still goes to the login page.
    expect(await whoIs(appUrl, "__databricks_app_session=forged.value")).toBe("login");
    // The kept sessions are credentials: only the state dir's owner reads them.
    expect(statSync(path.join(stack.work, "state/stand-in.json")).mode & 0o777).toBe(0o600);

    // Another program took the login port meanwhile: a new one, and the user is told.
    expect((await cli(["local", "down"])).exitCode).toBe(0);
    const { createServer } = await import("node:net");
    const squatter = createServer().listen(Number(loginPort), "127.0.0.1");
    try {
      const moved = await cli(["local", "up", "--detach", "--no-build", "--port", String(stack.port)]);
      expect(moved.exitCode, moved.stderr).toBe(0);
      // Detached, the supervisor says it in the log (`local logs`); in the foreground, on stderr.
      const logs = await cli(["local", "logs"]);
      expect(logs.stdout).toMatch(
        new RegExp(
          `the local login page's port ${loginPort} \\(kept from the last run\\) is taken by another program: using \\d+`,
        ),
      );
      expect(await loginPortOf(appUrl)).not.toBe(loginPort);
    } finally {
      squatter.close();
    }
  });
});
