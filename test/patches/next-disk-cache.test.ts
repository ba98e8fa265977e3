import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  KNOWN_NEXT_CONFIG_CACHE,
  NEXT_CONFIG_FILE,
  nextDiskCachePatch,
  patchNextDiskCacheText,
  verifyNextDiskCacheText,
} from "../../src/patches/next-disk-cache.js";
import { nextTracingRootPatch } from "../../src/patches/next-tracing-root.js";
import { MemoryTree } from "../../src/patches/tree.js";
import type { PrepareManifest } from "../../src/upstream/manifest.js";
import { runCli } from "../support/cli.js";
import {
  createSyntheticUpstream,
  SYNTHETIC_NEXT_CONFIG,
  SYNTHETIC_NEXT_CONFIG_NO_EXPERIMENTAL,
  type SyntheticUpstream,
} from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";
import { driftOf, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;

/** The config as Next loads it (an ES module). */
async function load(text: string): Promise<{ output: string; experimental?: Record<string, unknown> }> {
  const dir = tempDir("mmdb-next-cache-");
  writeFileSync(path.join(dir, "package.json"), '{"type":"module"}\n');
  writeFileSync(path.join(dir, "next.config.js"), text);
  return ((await import(pathToFileURL(path.join(dir, "next.config.js")).href)) as { default: never }).default;
}

describe("next-disk-cache patch: Next's caches never reach the disk (the app tree)", () => {
  it.each([
    ["v2.4.6 on (experimental: { proxyTimeout })", SYNTHETIC_NEXT_CONFIG, { proxyTimeout: 120_000 }],
    ["v2.0.0–v2.4.5 (no experimental)", SYNTHETIC_NEXT_CONFIG_NO_EXPERIMENTAL, {}],
  ] as const)(
    "%s: isrFlushToDisk false, upstream's settings kept, verified, idempotent",
    async (_, text, kept) => {
      const out = patchNextDiskCacheText(NEXT_CONFIG_FILE, text, ctx);
      expect(out.edits).toBe(1);
      expect(() => verifyNextDiskCacheText(NEXT_CONFIG_FILE, out.text, ctx)).not.toThrow();
      expect(patchNextDiskCacheText(NEXT_CONFIG_FILE, out.text, ctx)).toEqual({ text: out.text, edits: 0 });
      const config = await load(out.text);
      expect(config.output).toBe("standalone");
      expect(config.experimental).toEqual({ ...kept, isrFlushToDisk: false });
      expect((await load(text)).experimental?.isrFlushToDisk).toBeUndefined(); // upstream's: Next's default, true
    },
  );

  it("goes with next-tracing-root on the same file, in either order", () => {
    for (const order of [
      [nextTracingRootPatch, nextDiskCachePatch],
      [nextDiskCachePatch, nextTracingRootPatch],
    ]) {
      const tree = new MemoryTree({ [NEXT_CONFIG_FILE]: SYNTHETIC_NEXT_CONFIG });
      for (const p of order) p.apply(tree, ctx);
      for (const p of order) expect(() => p.verify(tree, ctx)).not.toThrow();
    }
  });

  it("another shape stops with drift (exit 3); verify refuses the switch taken out or turned on", () => {
    const cases: [string, string][] = [
      [SYNTHETIC_NEXT_CONFIG.replace('output: "standalone",', 'output: "export",'), KNOWN_NEXT_CONFIG_CACHE],
      [
        SYNTHETIC_NEXT_CONFIG.replace("export default nextConfig;", "export default { ...nextConfig };"),
        KNOWN_NEXT_CONFIG_CACHE,
      ],
      [
        SYNTHETIC_NEXT_CONFIG.replace(
          "experimental: {\n    proxyTimeout: 1000 * 120,\n  },",
          "experimental: sharedExperimental,",
        ),
        "found `experimental: sharedExperimental`",
      ],
    ];
    for (const [text, found] of cases) {
      const err = driftOf(() => patchNextDiskCacheText(NEXT_CONFIG_FILE, text, ctx));
      expect(err.message).toContain(
        `upstream drift in ${NEXT_CONFIG_FILE} (MetaMCP v9.9.9, patch next-disk-cache)`,
      );
      expect(err.message).toContain(found);
    }
    const patched = patchNextDiskCacheText(NEXT_CONFIG_FILE, SYNTHETIC_NEXT_CONFIG, ctx).text;
    expect(
      driftOf(() => verifyNextDiskCacheText(NEXT_CONFIG_FILE, SYNTHETIC_NEXT_CONFIG, ctx)).message,
    ).toContain("found none");
    expect(
      driftOf(() =>
        verifyNextDiskCacheText(
          NEXT_CONFIG_FILE,
          patched.replace("isrFlushToDisk: false", "isrFlushToDisk: true"),
          ctx,
        ),
      ).message,
    ).toContain("found `isrFlushToDisk: true`");
    // upstream turning it on itself is overridden (the tree must stay as deployed)
    const own = SYNTHETIC_NEXT_CONFIG.replace(
      "proxyTimeout: 1000 * 120,",
      "proxyTimeout: 1000 * 120,\n    isrFlushToDisk: true,",
    );
    expect(patchNextDiskCacheText(NEXT_CONFIG_FILE, own, ctx).text).toContain("isrFlushToDisk: false,");
  });
});

const MIRROR = process.env.METAMCP_MIRROR_GIT_DIR ?? "/work/.mirror/metatool-ai+metamcp/repo";
const mirrorSkip = existsSync(MIRROR) ? undefined : `skipped: needs the upstream mirror at ${MIRROR}`;

describe("on MetaMCP's real next.config.js", () => {
  it.skipIf(!!mirrorSkip)(
    `every v2.* tag and main patch and verify${mirrorSkip ? ` (${mirrorSkip})` : ""}`,
    () => {
      const git = (...args: string[]) =>
        execFileSync("git", ["--git-dir", MIRROR, ...args], { encoding: "utf8" });
      const refs = [...git("tag", "--list", "v2.*").split("\n").filter(Boolean), "main"];
      for (const ref of refs) {
        const tree = new MemoryTree({
          [NEXT_CONFIG_FILE]: git("cat-file", "blob", `${ref}:${NEXT_CONFIG_FILE}`),
        });
        const rctx = { ...ctx, upstreamRef: ref };
        expect(nextDiskCachePatch.apply(tree, rctx).files, ref).toEqual([
          { path: NEXT_CONFIG_FILE, edits: 1 },
        ]);
        nextDiskCachePatch.verify(tree, rctx);
      }
      expect(refs.length).toBeGreaterThanOrEqual(48);
    },
  );
});

describe("prepare through the real CLI", () => {
  let upstream: SyntheticUpstream;
  let root: string;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
    root = mkdtempSync(path.join(os.tmpdir(), "mmdb-next-cache-prepare-"));
  });
  afterAll(() => {
    upstream?.cleanup();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("the prepared next.config.js turns Next's disk caches off; the manifest records the patch", async () => {
    const buildDir = path.join(root, "main");
    const r = await runCli(
      ["--json", "prepare", "--repo", upstream.url, "--ref", "main", "--build-dir", buildDir],
      {
        cwd: root,
        env: { METAMCP_CACHE_DIR: path.join(root, ".cache") },
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const manifest = JSON.parse(r.stdout) as PrepareManifest;
    expect(manifest.patches.find((p) => p.id === "next-disk-cache")?.files).toEqual([
      { path: NEXT_CONFIG_FILE, edits: 1 },
    ]);
    const config = await load(readFileSync(path.join(buildDir, NEXT_CONFIG_FILE), "utf8"));
    expect(config.experimental?.isrFlushToDisk).toBe(false);
  }, 120_000);
});
