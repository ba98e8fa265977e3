import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { APP_LAYOUT } from "../../src/build/tree-policy.js";
import { freePort } from "../../src/local/postgres.js";
import { localPaths } from "../../src/local/state.js";
import { TREE_MANIFEST } from "../../src/runtime/tree-schema.js";
import { CLI_BIN, runCli } from "../support/cli.js";
import { createFakeAppTree } from "../support/fake-app-tree.js";
import { tempDir } from "../support/tmp.js";

/**
 * Every flag and variable `local` reads, given a bad value: one message naming it (as the user gave it:
 * the flag or the variable) and the accepted form, exit 2, nothing started. None of these reaches a port.
 */
describe("local: bad input", () => {
  const cases: { name: string; args: string[]; env?: Record<string, string>; message: RegExp }[] = [
    {
      name: "LOCAL_PORT=0",
      args: ["local", "up"],
      env: { LOCAL_PORT: "0" },
      message: /LOCAL_PORT="0" \(from env\) must be a port number from 1 to 65535/,
    },
    {
      name: "LOCAL_PORT=99999",
      args: ["local", "up"],
      env: { LOCAL_PORT: "99999" },
      message: /LOCAL_PORT="99999" \(from env\) must be a port number from 1 to 65535/,
    },
    {
      name: "LOCAL_PORT=abc",
      args: ["local", "up"],
      env: { LOCAL_PORT: "abc" },
      message: /LOCAL_PORT="abc" \(from env\) must be a port number from 1 to 65535$/m,
    },
    {
      name: "--port 0",
      args: ["local", "up", "--port", "0"],
      message: /--port="0" \(from flag\) must be a port number from 1 to 65535/,
    },
    {
      name: "--port 65536",
      args: ["local", "up", "--port", "65536"],
      message: /--port="65536" \(from flag\) must be a port/,
    },
    {
      name: "--credential-ttl abc",
      args: ["local", "up", "--credential-ttl", "abc"],
      message: /--credential-ttl "abc": must be a whole number of seconds from 1 to 86400/,
    },
    {
      name: "--credential-ttl 0",
      args: ["local", "up", "--credential-ttl", "0"],
      message: /--credential-ttl "0": must be a whole number of seconds/,
    },
    {
      name: "--token-ttl 1e9",
      args: ["local", "up", "--token-ttl", "1e9"],
      message: /--token-ttl "1e9": must be a whole number of seconds from 1 to 86400/,
    },
    // Beyond a day a Node timer overflows and fires at once: every request would be cut immediately.
    {
      name: "--request-timeout 9999999",
      args: ["local", "up", "--request-timeout", "9999999"],
      message: /--request-timeout "9999999": must be a whole number of seconds from 1 to 86400/,
    },
    {
      name: "--stream-timeout -5",
      args: ["local", "up", "--stream-timeout=-5"],
      message: /--stream-timeout "-5": must be a whole number/,
    },
    {
      name: "--forward-authorization maybe",
      args: ["local", "up", "--forward-authorization", "maybe"],
      message: /--forward-authorization.*maybe.*Allowed choices are on, off/,
    },
    {
      name: "--managed-mcp maybe",
      args: ["local", "up", "--managed-mcp", "maybe"],
      message: /--managed-mcp.*maybe.*Allowed choices are on, off/,
    },
    {
      name: "--genie-delay 0",
      args: ["local", "up", "--genie-delay", "0"],
      message: /--genie-delay "0": must be a whole number of seconds from 1 to 86400/,
    },
    {
      name: "--user-scopes 'genie;x'",
      args: ["local", "up", "--user-scopes", "genie;x"],
      message: /--user-scopes "genie;x": must be OAuth scope names separated by commas/,
    },
    {
      name: "LOCAL_STATE_DIR=<placeholder>",
      args: ["local", "status"],
      env: { LOCAL_STATE_DIR: "<state dir>" },
      message: /LOCAL_STATE_DIR is still a placeholder/,
    },
  ];
  for (const c of cases) {
    it(`${c.name}: exit 2, one message naming it and the accepted form`, async () => {
      const dir = tempDir();
      const args = c.args[1] === "up" ? [...c.args, "--no-build"] : c.args;
      const r = await runCli(args, {
        cwd: dir,
        env: { LOCAL_STATE_DIR: path.join(dir, "state"), ...c.env },
        timeoutMs: 60_000,
      });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch(c.message);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    });
  }

  it("`local status` and `local token` with nothing running: exit 5 (not 3, which means upstream drift)", async () => {
    const dir = tempDir();
    const env = { LOCAL_STATE_DIR: path.join(dir, "state") };
    const status = await runCli(["local", "status"], { cwd: dir, env });
    expect(status.exitCode).toBe(5);
    expect(status.stdout).toMatch(/stopped/);
    const token = await runCli(["local", "token"], { cwd: dir, env });
    expect(token.exitCode).toBe(5);
    expect(token.stdout).toBe("");
    expect(token.stderr).toMatch(/not running/);
  });

  it("an unwritable state dir (real permissions, as an unprivileged user): exit 2 naming it and what to do", async (ctx) => {
    const setpriv = spawnSync("setpriv", ["--version"]);
    if (process.getuid?.() !== 0 || setpriv.status !== 0)
      return ctx.skip("skipped: needs root and setpriv to run the CLI as another user");
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const locked = path.join(dir, "locked");
    mkdirSync(locked, { mode: 0o755 }); // owned by root: the unprivileged user may not write here
    const r = spawnSync(
      "setpriv",
      [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        process.execPath,
        CLI_BIN,
        "local",
        "up",
        "--no-build",
      ],
      {
        cwd: dir,
        env: {
          PATH: process.env.PATH,
          HOME: dir,
          NO_COLOR: "1",
          LOCAL_STATE_DIR: path.join(locked, "state"),
        },
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain(
      `cannot write . in the local state dir ${path.join(locked, "state")} (EACCES)`,
    );
    expect(r.stderr).toMatch(/LOCAL_STATE_DIR=/);
    expect(r.stderr).not.toMatch(/internal error/);
  });

  it("`up --fresh` without a terminal and without --yes: exit 2, the database kept", async () => {
    const dir = tempDir();
    const pg = path.join(dir, "state/pg");
    mkdirSync(pg, { recursive: true });
    writeFileSync(path.join(pg, "PG_VERSION"), "18\n");
    const r = await runCli(["local", "up", "--no-build", "--fresh"], {
      cwd: dir,
      env: { LOCAL_STATE_DIR: path.join(dir, "state") },
    });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/not confirmed[\s\S]*--yes/);
    expect(readFileSync(path.join(pg, "PG_VERSION"), "utf8")).toBe("18\n");
  });

  it("no built app tree in APP_DIR: exit 2 saying to build", async () => {
    const dir = tempDir();
    const r = await runCli(["local", "up", "--no-build"], {
      cwd: dir,
      env: { LOCAL_STATE_DIR: path.join(dir, "state"), APP_DIR: path.join(dir, "nothing-here") },
    });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/no built app tree in .*nothing-here[\s\S]*build/);
  });

  it("a state dir path through a file (ENOTDIR): exit 2 naming it", async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "afile"), "x");
    const r = await runCli(["local", "up", "--no-build"], {
      cwd: dir,
      env: { LOCAL_STATE_DIR: path.join(dir, "afile/state") },
    });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/cannot write . in the local state dir .*afile\/state \(ENOTDIR\)/);
  });

  it("METAMCP_DB_SCHEMA=other on a tree prepared for metamcp_app: exit 2 naming both and the fix, before anything is created", async () => {
    const dir = tempDir();
    const app = createFakeAppTree(path.join(dir, "app"));
    mkdirSync(path.join(app, ".metamcp-databricks"), { recursive: true });
    writeFileSync(path.join(app, TREE_MANIFEST), JSON.stringify({ schema: "metamcp_app" }));
    const stateDir = path.join(dir, "state");
    const r = await runCli(["local", "up", "--no-build", "--port", String(await freePort())], {
      cwd: dir,
      env: { LOCAL_STATE_DIR: stateDir, APP_DIR: app, METAMCP_DB_SCHEMA: "other" },
    });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(
      /METAMCP_DB_SCHEMA is "other" but the app tree in .*app was prepared for schema "metamcp_app" .*nothing was created/,
    );
    expect(r.stderr).toMatch(
      /set METAMCP_DB_SCHEMA=metamcp_app .*or prepare and build again with METAMCP_DB_SCHEMA=other/,
    );
    expect(r.stderr).not.toMatch(/a bug|\n\s+at /);
    // No database was made (nor a schema in it): PostgreSQL never started.
    expect(existsSync(localPaths(stateDir).pgDir)).toBe(false);
    // The runtime finds the tree's record where the build writes it.
    expect(TREE_MANIFEST).toBe(APP_LAYOUT.manifest);
  });
});
