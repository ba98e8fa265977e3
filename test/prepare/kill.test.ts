import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, runCli } from "../support/cli.js";
import { type GitHttpServer, startGitHttpServer } from "../support/git-http-server.js";
import { createSyntheticUpstream, type SyntheticUpstream } from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * `kill -9` of a real `prepare` while git talks to the server (held mid-request by the test): the next
 * prepare must not wait on the dead run's lock (it names the dead owner and takes the lock at once) and must
 * remove what the dead run left (its temporary mirror, its work tree).
 */
async function waitFor<T>(what: string, probe: () => T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("prepare after a kill -9", () => {
  let root: string;
  let upstream: SyntheticUpstream;
  let server: GitHttpServer;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), "mmdb-kill-"));
    upstream = createSyntheticUpstream({ dir: path.join(root, "upstream") });
    server = await startGitHttpServer({ root, username: "u", password: "kill-test-token" });
  });
  afterAll(async () => {
    for (const c of children) {
      if (c.pid && c.exitCode === null && c.signalCode === null) process.kill(-c.pid, "SIGKILL");
    }
    server?.release();
    await server?.close();
    upstream?.cleanup();
    rmSync(root, { recursive: true, force: true });
  });

  /** Starts prepare in its own process group (so the test can kill it and its git children like a crash). */
  function startPrepare(cwd: string, ref: string): ChildProcess {
    const child = spawn(
      process.execPath,
      [CLI_BIN, "prepare", "--repo", server.urlWithCredentials("upstream"), "--ref", ref],
      {
        cwd,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, METAMCP_CACHE_DIR: path.join(cwd, ".cache") },
        detached: true,
        stdio: "ignore",
      },
    );
    children.push(child);
    return child;
  }

  async function killHard(child: ChildProcess): Promise<void> {
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(-child.pid!, "SIGKILL");
    await exited;
  }

  const nextPrepare = (cwd: string, ref: string) =>
    runCli(["prepare", "--repo", server.urlWithCredentials("upstream"), "--ref", ref], {
      cwd,
      env: { METAMCP_CACHE_DIR: path.join(cwd, ".cache") },
      timeoutMs: 60_000,
    });

  it("during the first clone: the lock is reclaimed at once and the temporary mirror removed", async () => {
    const cwd = tempDir();
    const repos = path.join(cwd, ".cache/repos");
    server.hold();
    const child = startPrepare(cwd, "v2.1.0");
    await server.nextRequest();
    const lock = await waitFor("the mirror lock", () =>
      existsSync(repos) ? readdirSync(repos).find((n) => n.endsWith(".git.lock")) : undefined,
    );
    const owner = JSON.parse(readFileSync(path.join(repos, `${lock}.owner.json`), "utf8"));
    expect(owner.pid).toBe(child.pid);
    expect(readdirSync(repos).some((n) => n.includes(".git.tmp-"))).toBe(true);
    await killHard(child);
    server.release();

    const r = await nextPrepare(cwd, "v2.1.0");
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(`left by process ${child.pid} on ${os.hostname()}`);
    expect(r.stderr).toContain("which no longer runs");
    expect(r.stderr).not.toContain("waiting for");
    expect(r.stderr).toMatch(/removed \S+\.git\.tmp-\S+, left by an interrupted prepare/);
    expect(readdirSync(repos).filter((n) => !n.endsWith(".git"))).toEqual([]);
  });

  it("during a checkout: the work tree beside the build dir is removed by the next run", async () => {
    const cwd = tempDir();
    const first = await nextPrepare(cwd, "v2.0.0");
    expect(first.exitCode, first.stderr).toBe(0);
    const build = path.join(cwd, "build");
    // Hold every request; let through those that come before the work tree exists (the fetch).
    server.hold();
    const child = startPrepare(cwd, "v2.2.0");
    for (;;) {
      await server.nextRequest();
      if (readdirSync(build).some((n) => n.startsWith(".metamcp.prepare-"))) break;
      server.release();
      server.hold();
    }
    await killHard(child);
    server.release();
    expect(readdirSync(build).filter((n) => n.startsWith(".metamcp.prepare-")).length).toBeGreaterThan(0);

    const r = await nextPrepare(cwd, "v2.2.0");
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /removed \S+\/build\/\.metamcp\.prepare-\d+-\S+, left by an interrupted prepare/,
    );
    expect(readdirSync(build)).toEqual(["metamcp"]);
    expect(
      JSON.parse(readFileSync(path.join(build, "metamcp/.metamcp-databricks/manifest.json"), "utf8")).commit,
    ).toBe(upstream.tags["v2.2.0"]);
  });
});
