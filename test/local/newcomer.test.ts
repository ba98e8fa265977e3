import {
  appendFileSync,
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/local/postgres.js";
import { waitFor } from "../../src/retry.js";
import { runCli } from "../support/cli.js";
import { createFakeAppTree, freeInternalPorts, type InternalPorts } from "../support/fake-app-tree.js";

/**
 * Defects a newcomer and an operator met with `local` (issue 22), each through the real CLI with real
 * processes: every test here failed on the code before its fix.
 */
function scriptedAppTree(dir: string, script: string): string {
  mkdirSync(path.join(dir, "runtime"), { recursive: true });
  writeFileSync(path.join(dir, "runtime/start.mjs"), script);
  return dir;
}

describe("local as a newcomer meets it", () => {
  let work: string;
  let port: number;
  let env: Record<string, string>;
  let internal: InternalPorts;

  const cli = (args: string[], extraEnv: Record<string, string> = {}, timeoutMs = 180_000) =>
    runCli(args, { cwd: work, env: { ...env, ...extraEnv }, timeoutMs });

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "mmdb-newcomer-"));
    chmodSync(work, 0o755); // as root, PostgreSQL's own user must reach the data dir inside it
    internal = await freeInternalPorts();
    createFakeAppTree(path.join(work, "app"), { backendPort: internal.backendPort });
    port = await freePort();
    env = { APP_DIR: path.join(work, "app"), LOCAL_STATE_DIR: path.join(work, "state"), ...internal.env };
  });

  afterEach(async () => {
    await cli(["local", "down"]);
  });

  afterAll(async () => {
    await cli(["local", "down"]);
    rmSync(work, { recursive: true, force: true });
  });

  it("the failure reason of `up --detach` is whole after a log holding multi-byte characters (not cut mid-word)", async () => {
    const app = scriptedAppTree(
      path.join(work, "dying-app"),
      ['console.error("cannot go on: port 12008 … giving up → ✗");', "process.exit(7);"].join("\n"),
    );
    // An earlier run's lines with multi-byte characters (ours print … and →): bytes outnumber characters.
    mkdirSync(env.LOCAL_STATE_DIR!, { recursive: true, mode: 0o755 });
    writeFileSync(path.join(env.LOCAL_STATE_DIR!, "local.log"), `${"→ earlier line …\n".repeat(5000)}`);
    const d = await cli(["local", "up", "--detach", "--no-build", "--port", String(port)], { APP_DIR: app });
    expect(d.exitCode, d.stderr).toBe(6);
    // local.log holds MetaMCP's output (it may name users, servers, errors): 0600, an earlier 0644 one too.
    expect(statSync(path.join(env.LOCAL_STATE_DIR!, "local.log")).mode & 0o777).toBe(0o600);
    expect(d.stderr).toContain("cannot go on: port 12008 … giving up → ✗");
    // What this run printed, from its first line on: before the fix a byte offset cut the string.
    expect(d.stderr).toMatch(/^postgres: ready on port \d+/m);
    expect(d.stderr).not.toContain("earlier line");
    const j = await cli(["--json", "local", "up", "--detach", "--no-build", "--port", String(port)], {
      APP_DIR: app,
    });
    expect(j.exitCode).toBe(6);
    const parsed = JSON.parse(j.stdout) as { error: { code: string; message: string } };
    expect(parsed.error.code).toBe("local_failed");
    expect(parsed.error.message).toMatch(/^the local app did not start: /);
    expect(parsed.error.message).toContain("cannot go on: port 12008 … giving up → ✗");
    expect(parsed.error.message).not.toContain("earlier line");
    // The supervisor's JSON log lines come whole: each one in the tail parses.
    expect(parsed.error.message).toMatch(/^\{"/m);
    for (const line of parsed.error.message
      .split("\n")
      .slice(1)
      .filter((l) => l.startsWith('{"')))
      expect(() => JSON.parse(line), line).not.toThrow();
  });

  it("`local logs` keeps MetaMCP's levels (stderr at least warn, stacks and connection errors error); --level filters", async () => {
    const app = path.join(work, "noisy-app");
    createFakeAppTree(app, { backendPort: internal.backendPort });
    appendFileSync(
      path.join(app, "metamcp/apps/backend/dist/index.js"),
      [
        "",
        'console.log("plain backend chatter");',
        'console.warn("a deprecation notice from the backend");',
        'console.error("Error connecting to MCP server: connect ECONNREFUSED 127.0.0.1:9");',
        'console.error("    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1611:16)");',
        "",
      ].join("\n"),
    );
    const up = await cli(["local", "up", "--detach", "--no-build", "--port", String(port)], { APP_DIR: app });
    expect(up.exitCode, up.stderr).toBe(0);
    // The banner says what `connect` does: without --write it prints the configs.
    expect(up.stdout).toMatch(/connect <endpoint> --local prints their config \(add --write to write it\)/);
    const levelOf = (text: string, needle: string) => {
      const line = text.split("\n").find((l) => l.includes(needle));
      expect(line, needle).toBeDefined();
      return (JSON.parse(line!) as { level: string }).level;
    };
    const all = await cli(["local", "logs"]);
    expect(all.exitCode).toBe(0);
    expect(levelOf(all.stdout, "plain backend chatter")).toBe("info");
    expect(levelOf(all.stdout, "a deprecation notice")).toBe("warn");
    expect(levelOf(all.stdout, "ECONNREFUSED 127.0.0.1:9")).toBe("error");
    expect(levelOf(all.stdout, "at TCPConnectWrap.afterConnect")).toBe("error");
    const warn = await cli(["local", "logs", "--level", "warn"]);
    expect(warn.exitCode).toBe(0);
    expect(warn.stdout).toContain("a deprecation notice");
    expect(warn.stdout).toContain("ECONNREFUSED 127.0.0.1:9");
    expect(warn.stdout).not.toContain("plain backend chatter");
    const errors = await cli(["local", "logs", "--level", "error"]);
    expect(errors.stdout).toContain("ECONNREFUSED 127.0.0.1:9");
    expect(errors.stdout).not.toContain("a deprecation notice");
    const bad = await cli(["local", "logs", "--level", "loud"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/Allowed choices are debug, info, warn, error/);
  });

  it("`local status` after the supervisor was killed says what still runs and how to stop it", async () => {
    const up = await cli(["--json", "local", "up", "--detach", "--no-build", "--port", String(port)]);
    expect(up.exitCode, up.stderr).toBe(0);
    const run = JSON.parse(readFileSync(path.join(env.LOCAL_STATE_DIR!, "run.json"), "utf8")) as {
      supervisorPid: number;
      appPid: number;
      pgPid: number;
    };
    process.kill(run.supervisorPid, "SIGKILL");
    await waitFor(
      () => {
        try {
          process.kill(run.supervisorPid, 0);
          return undefined;
        } catch {
          return true;
        }
      },
      { timeoutMs: 10_000, what: "the supervisor to die" },
    );
    const status = await cli(["local", "status"]);
    expect(status.exitCode).toBe(5);
    expect(status.stdout).toContain(`app (pid ${run.appPid})`);
    expect(status.stdout).toContain(`postgres (pid ${run.pgPid})`);
    expect(status.stdout).toMatch(/local down` stops them/);
    const json = await cli(["--json", "local", "status"]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      status: "stopped",
      leftovers: [{ what: "app" }, { what: "postgres" }],
    });
    expect((await cli(["local", "down"])).exitCode).toBe(0);
    expect((await cli(["local", "status"])).stdout).toMatch(/^stopped \(start it/);
  });
});
