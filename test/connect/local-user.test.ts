import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/local/postgres.js";
import { localPaths, readRunState } from "../../src/local/state.js";
import { ENDPOINT_IDENTITY_ROUTE } from "../../src/patches/endpoint-identity-module.js";
import { runCli } from "../support/cli.js";
import { FAKE_SCHEMA } from "../support/fake-app-endpoints.js";
import { createFakeAppTree, freeInternalPorts, type InternalPorts } from "../support/fake-app-tree.js";

/**
 * `connect --local` and `local token` for another local user (issue 22 item 15): `--user EMAIL` gets that
 * user's token, the warning says whose token asked, and a token for one user never opens another's
 * private endpoint (real CLI, real stand-in, the fake tree's MCP server behind our router).
 */
const BOB = "bob@example.com";
const CAROL = "carol@example.com";

describe("connect --local --user / local token --user", () => {
  let work: string;
  let internal: InternalPorts | undefined;
  let appUrl: string;
  let db: pg.Client;
  const stateDir = () => path.join(work, "state");
  const cli = (args: string[]) =>
    runCli(args, {
      cwd: work,
      env: {
        APP_DIR: path.join(work, "app"),
        LOCAL_STATE_DIR: stateDir(),
        METAMCP_CONNECT_DIR: path.join(work, "connect"),
        ...internal?.env,
      },
      timeoutMs: 120_000,
    });
  const tokenFor = async (email?: string) => {
    const r = await cli(["local", "token", ...(email ? ["--user", email] : [])]);
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout.trim();
  };
  /** An MCP initialize, raw, with a Databricks token alone: the status MetaMCP answers. */
  const initialize = async (endpoint: string, token: string) =>
    (
      await fetch(`${appUrl}/metamcp/${endpoint}/mcp`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
          accept: "application/json, text/event-stream",
        },
        body: JSON.stringify({
          jsonrpc: "2.0",
          id: 1,
          method: "initialize",
          params: {
            protocolVersion: "2025-03-26",
            capabilities: {},
            clientInfo: { name: "t", version: "1" },
          },
        }),
        redirect: "manual",
      })
    ).status;
  const signIn = async (email: string) => {
    const login = new URL((await fetch(appUrl, { redirect: "manual" })).headers.get("location")!);
    const form = new URLSearchParams({
      email,
      name: email.split("@")[0]!,
      redirect_uri: login.searchParams.get("redirect_uri")!,
      state: "/",
    });
    const r = await fetch(new URL("/login.html", login), { method: "POST", body: form, redirect: "manual" });
    expect(r.status).toBe(302);
  };

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "mmdb-cuser-"));
    chmodSync(work, 0o755);
    internal = await freeInternalPorts();
    createFakeAppTree(path.join(work, "app"), { backendPort: internal.backendPort });
    const up = await cli([
      "--json",
      "local",
      "up",
      "--detach",
      "--no-build",
      "--port",
      String(await freePort()),
    ]);
    expect(up.exitCode, up.stderr).toBe(0);
    appUrl = (JSON.parse(up.stdout) as { appUrl: string }).appUrl;
    await signIn(BOB);
    await signIn(CAROL);
    // Bob's MetaMCP user exists once his identity came through the proxy; then he owns a private endpoint.
    const bob = await tokenFor(BOB);
    expect(
      (
        await fetch(`${appUrl}${ENDPOINT_IDENTITY_ROUTE}/demo`, {
          headers: { authorization: `Bearer ${bob}` },
        })
      ).status,
    ).toBe(200);
    const paths = localPaths(stateDir());
    const state = readRunState(paths)!;
    const secrets = JSON.parse(readFileSync(paths.secretsFile, "utf8")) as { pgSuperPassword: string };
    const admin = {
      host: "127.0.0.1",
      port: state.ports.postgres,
      user: "postgres",
      password: secrets.pgSuperPassword,
    };
    const probe = new pg.Client({ ...admin, database: "postgres" });
    await probe.connect();
    const dbs = await probe.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'",
    );
    await probe.end();
    db = new pg.Client({ ...admin, database: dbs.rows[0]!.datname });
    await db.connect();
    await db.query(
      `INSERT INTO "${FAKE_SCHEMA}".endpoints (name, enable_api_key_auth, user_id) SELECT 'bobs', true, id FROM "${FAKE_SCHEMA}".users WHERE email = $1`,
      [BOB],
    );
  });

  afterAll(async () => {
    await db?.end().catch(() => {});
    await cli(["local", "down"]);
    rmSync(work, { recursive: true, force: true });
  });

  it("without --user: the warning names the default user's token and says to add --user", async () => {
    const r = await cli(["connect", "bobs", "--local", "--client", "claude-code"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /could not ask the app with a token for local-user@example\.com \(the local default user\) whether bobs accepts the Databricks identity \(.*You can only access endpoints you own.*\): configs use a MetaMCP API key; if bobs is another local user's, add --user <their email>/,
    );
  });

  it("--user bob: his endpoint accepts his identity, no warning, and the bridge the config starts mints his tokens", async () => {
    const r = await cli(["--json", "connect", "bobs", "--local", "--user", BOB, "--client", "claude-code"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/could not ask the app/);
    const out = JSON.parse(r.stdout) as { auth: string; configs: { text?: string }[] };
    expect(out.auth).toBe("identity");
    expect(JSON.stringify(out.configs)).toContain(`"--user","${BOB}"`);
  });

  it("a token for one user never opens another's private endpoint; unknown users and non-emails are refused", async () => {
    expect(await initialize("bobs", await tokenFor(BOB))).toBe(200);
    expect(await initialize("bobs", await tokenFor(CAROL))).toBe(403);
    expect(await initialize("bobs", await tokenFor())).toBe(403);
    const nobody = await cli(["local", "token", "--user", "nobody@example.com"]);
    expect(nobody.exitCode).toBe(2);
    expect(nobody.stdout).toBe("");
    expect(nobody.stderr).toMatch(
      /no local user nobody@example\.com: a local user exists once they signed in at the local login page/,
    );
    const notEmail = await cli(["local", "token", "--user", "bob"]);
    expect(notEmail.exitCode).toBe(2);
    expect(notEmail.stderr).toMatch(/--user "bob" is not an email/);
    const remote = await cli(["connect", "bobs", "--user", BOB]);
    expect(remote.exitCode).toBe(2);
    expect(remote.stderr).toMatch(/--user is for the local rehearsal \(--local\)/);
  });
});
