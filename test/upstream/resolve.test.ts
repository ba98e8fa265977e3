import { existsSync } from "node:fs";
import path from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { createLogger, silentLogger } from "../../src/log/logger.js";
import { mirrorDirFor, normalizeRepoUrl, syncMirror } from "../../src/upstream/cache.js";
import { listRefs, resolveRef } from "../../src/upstream/refs.js";
import {
  addUpstreamCommit,
  createSyntheticUpstream,
  type SyntheticUpstream,
} from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

describe("ref resolution on a synthetic upstream (through the cache mirror)", () => {
  let upstream: SyntheticUpstream;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
  });
  afterAll(() => upstream?.cleanup());

  async function resolve(ref: string, cache = tempDir()) {
    const mirror = await syncMirror(upstream.url, cache, silentLogger);
    const refs = await listRefs(mirror.gitDir, mirror.defaultBranch);
    return resolveRef(mirror.gitDir, ref, refs, upstream.url);
  }

  it("defaults to the newest stable tag on the default branch, and says why", async () => {
    const r = await resolve("");
    expect(r).toMatchObject({ resolvedRef: "v2.2.0", kind: "release", commit: upstream.tags["v2.2.0"] });
    expect(r.reason).toContain("v2.4.0 (not on main)");
    expect(r.reason).toContain("v2.4.1-docker-per-mcp (pre-release or suffixed tag)");
    expect(r.reason).toContain("v2.3.0-test (pre-release or suffixed tag)");
  });

  it("resolves annotated and lightweight tags, branches, full and short SHAs", async () => {
    const cache = tempDir();
    expect(await resolve("v2.0.0", cache)).toMatchObject({ kind: "tag", commit: upstream.tags["v2.0.0"] });
    expect(await resolve("v2.1.0", cache)).toMatchObject({ kind: "tag", commit: upstream.tags["v2.1.0"] });
    expect(await resolve("docker-per-mcp", cache)).toMatchObject({
      kind: "branch",
      resolvedRef: "docker-per-mcp",
      commit: upstream.commits.sideHead,
    });
    const sha = upstream.commits.commitOnly;
    expect(await resolve(sha, cache)).toMatchObject({ kind: "commit", resolvedRef: sha, commit: sha });
    expect(await resolve(sha.slice(0, 8), cache)).toMatchObject({ kind: "commit", commit: sha });
    // A SHA some tag points at resolves to that tag's name.
    expect(await resolve(upstream.tags["v2.1.0"]!.slice(0, 10), cache)).toMatchObject({
      resolvedRef: "v2.1.0",
      kind: "commit",
    });
  });

  it("refuses a missing ref with exit 2 and the nearest tags", async () => {
    const err = await resolve("v2.2.9").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).exitCode).toBe(2);
    expect((err as UserError).code).toBe("ref_not_found");
    expect((err as UserError).message).toMatch(/nearest tags: v2\.2\.0, /);
  });

  it("reuses the mirror: a second sync fetches only what is new", async () => {
    const cache = tempDir();
    const first = await syncMirror(upstream.url, cache, silentLogger);
    expect(first.created).toBe(true);
    const added = addUpstreamCommit(upstream, { "NEWS.md": "new\n" }, "news");
    const second = await syncMirror(upstream.url, cache, silentLogger);
    expect(second.created).toBe(false);
    expect(second.gitDir).toBe(first.gitDir);
    const refs = await listRefs(second.gitDir, second.defaultBranch);
    expect(refs.branches.find((b) => b.name === "main")?.commit).toBe(added);
  });

  it("serialises concurrent prepares on one mirror (both succeed)", async () => {
    const cache = tempDir();
    const [a, b] = await Promise.all([
      syncMirror(upstream.url, cache, silentLogger),
      syncMirror(upstream.url, cache, silentLogger),
    ]);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    expect(a.gitDir).toBe(b.gitDir);
    expect(existsSync(`${a.gitDir}.lock`)).toBe(false);
  });

  it("falls back to the cached refs, with a warning, when the remote is gone", async () => {
    const cache = tempDir();
    const other = createSyntheticUpstream({ dir: path.join(tempDir(), "repo") });
    await syncMirror(other.url, cache, silentLogger);
    other.cleanup();
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on("data", (chunk: Buffer) => lines.push(chunk.toString()));
    const mirror = await syncMirror(other.url, cache, createLogger({ stream }));
    expect(mirror.fetched).toBe(false);
    expect(lines.join("")).toMatch(/⚠ could not update the cache .*using the refs cached/);
    const refs = await listRefs(mirror.gitDir, mirror.defaultBranch);
    expect((await resolveRef(mirror.gitDir, "", refs, other.url)).resolvedRef).toBe("v2.2.0");
  });

  it("keys the cache by URL and makes local paths absolute", () => {
    expect(normalizeRepoUrl("x/../", upstream.dir)).toBe(path.resolve(upstream.dir));
    expect(normalizeRepoUrl("https://github.com/metatool-ai/metamcp.git/", "/")).toBe(
      "https://github.com/metatool-ai/metamcp.git",
    );
    expect(() => normalizeRepoUrl("./no-such-repo", upstream.dir)).toThrow(UserError);
    const a = mirrorDirFor("/c", "https://github.com/metatool-ai/metamcp.git");
    const b = mirrorDirFor("/c", "https://github.com/someone/metamcp.git");
    expect(a).not.toBe(b);
    expect(path.basename(a)).toMatch(/^metatool-ai-metamcp-[0-9a-f]{12}\.git$/);
  });
});
