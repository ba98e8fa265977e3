import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { type GitHttpServer, startGitHttpServer } from "../support/git-http-server.js";
import { npmRegistryReachable } from "../support/npm-registry.js";
import { writeStubRuntimeBundle } from "../support/stub-runtime-bundle.js";
import { syntheticAppFiles } from "../support/synthetic-app.js";
import { createSyntheticUpstream, type SyntheticUpstream } from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * A private fork behind HTTP Basic auth (a real git smart-HTTP server on 127.0.0.1), reached with the token in
 * the URL as users paste it: `http://user:TOKEN@host/fork`. The token must work and must appear nowhere: not
 * in any output, error, manifest, file or file name we write.
 */
const USER = "fork-user";
const registryReachable = await npmRegistryReachable;
const TOKEN = "ghp_S3cretT0kenValue9876";

/** Every file name and every file's text under `dir`. */
function everything(dir: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      out.push(full);
      if (e.isDirectory()) walk(full);
      else if (e.isFile() && statSync(full).size < 5_000_000) out.push(readFileSync(full, "latin1"));
    }
  };
  walk(dir);
  return out.join("\n");
}

describe("a token in the repository URL", () => {
  let root: string;
  let upstream: SyntheticUpstream;
  let server: GitHttpServer;
  beforeAll(async () => {
    root = (await import("node:fs")).mkdtempSync(path.join((await import("node:os")).tmpdir(), "mmdb-http-"));
    // Buildable (a backend and a frontend), so `build` can assemble the app tree from it.
    upstream = createSyntheticUpstream({
      dir: path.join(root, "fork"),
      extraFiles: (version) => syntheticAppFiles(version, { migrations: false }),
    });
    server = await startGitHttpServer({ root, username: USER, password: TOKEN });
  });
  afterAll(async () => {
    await server?.close();
    upstream?.cleanup();
    (await import("node:fs")).rmSync(root, { recursive: true, force: true });
  });

  it("fetches with it, and it appears in no output, manifest, cache file or name", async () => {
    const cwd = tempDir();
    const cache = path.join(cwd, ".cache");
    const env = { METAMCP_CACHE_DIR: cache };
    const url = server.urlWithCredentials("fork");
    const first = await runCli(["prepare", "--repo", url, "--ref", "v2.1.0"], {
      cwd,
      env,
      timeoutMs: 60_000,
    });
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stderr).toContain(`cloning ${server.url("fork")} into the cache`);
    expect(first.stdout).toContain(`from     ${server.url("fork")}`);

    // Another ref: an update fetch and a checkout of files the partial mirror lacks, both authenticated.
    const json = await runCli(["--json", "prepare", "--repo", url, "--ref", "v2.2.0"], {
      cwd,
      env,
      timeoutMs: 60_000,
    });
    expect(json.exitCode, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      repoUrl: server.url("fork"),
      commit: upstream.tags["v2.2.0"],
    });
    expect(server.requests.some((r) => r.authorized)).toBe(true);

    const manifest = readFileSync(path.join(cwd, "build/metamcp/.metamcp-databricks/manifest.json"), "utf8");
    expect(JSON.parse(manifest).repoUrl).toBe(server.url("fork"));

    for (const text of [first.stdout, first.stderr, json.stdout, json.stderr, everything(cwd)]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(encodeURIComponent(TOKEN));
    }
  });

  // `build` installs upstream's dependencies with pnpm from the npm registry.
  it.skipIf(!registryReachable)(
    "the app tree's manifest from `build` has the URL without it (skipped: needs the npm registry)",
    async () => {
      const cwd = tempDir();
      const url = server.urlWithCredentials("fork");
      const env = { METAMCP_CACHE_DIR: path.join(cwd, ".cache"), METAMCP_REPO_URL: url };
      const prepared = await runCli(["prepare"], { cwd, env, timeoutMs: 60_000 });
      expect(prepared.exitCode, prepared.stderr).toBe(0);
      const runtime = writeStubRuntimeBundle(cwd);
      const built = await runCli(["build", "--runtime-bundle", runtime], { cwd, env, timeoutMs: 300_000 });
      expect(built.exitCode, built.stderr).toBe(0);
      const appManifest = readFileSync(path.join(cwd, "build/app/.metamcp-databricks/manifest.json"), "utf8");
      expect(JSON.parse(appManifest).repoUrl).toBe(server.url("fork"));
      for (const text of [prepared.stdout, prepared.stderr, built.stdout, built.stderr, everything(cwd)]) {
        expect(text).not.toContain(TOKEN);
      }
    },
  );

  it("`config` and `config --json` print the URL without it", async () => {
    const cwd = tempDir();
    const env = { METAMCP_REPO_URL: server.urlWithCredentials("fork") };
    const text = await runCli(["config"], { cwd, env });
    const json = await runCli(["config", "--json"], { cwd, env });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(json.exitCode, json.stderr).toBe(0);
    expect(text.stdout).toMatch(
      new RegExp(`METAMCP_REPO_URL +${server.url("fork").replace(/[.]/g, "\\.")} +\\(env\\)`),
    );
    expect(JSON.parse(json.stdout).values.METAMCP_REPO_URL).toEqual({
      value: server.url("fork"),
      source: "env",
    });
    for (const out of [text.stdout, text.stderr, json.stdout, json.stderr]) expect(out).not.toContain(TOKEN);
  });

  it("repo_unreachable (a wrong token, a missing fork) names the URL without credentials, text and JSON", async () => {
    const wrong = "ghp_Wr0ngT0kenValue5555";
    const cases = [
      server.urlWithCredentials("fork").replace(TOKEN, wrong),
      server.urlWithCredentials("no-such-fork"),
    ];
    for (const url of cases) {
      const cwd = tempDir();
      const env = { METAMCP_CACHE_DIR: path.join(cwd, ".cache") };
      const text = await runCli(["prepare", "--repo", url], { cwd, env, timeoutMs: 60_000 });
      const json = await runCli(["--json", "prepare", "--repo", url], { cwd, env, timeoutMs: 60_000 });
      expect(text.exitCode).toBe(2);
      expect(json.exitCode).toBe(2);
      expect(text.stderr).toMatch(/error: cannot fetch http:\/\/127\.0\.0\.1:\d+\/(fork|no-such-fork): /);
      expect(JSON.parse(json.stdout).error.code).toBe("repo_unreachable");
      expect(JSON.parse(json.stdout).error.message).toMatch(/^cannot fetch http:\/\/127\.0\.0\.1:\d+\//);
      for (const out of [text.stdout, text.stderr, json.stdout, json.stderr, everything(cwd)]) {
        expect(out).not.toContain(TOKEN);
        expect(out).not.toContain(wrong);
      }
    }
  });
});
