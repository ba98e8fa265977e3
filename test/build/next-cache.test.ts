import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import os from "node:os";
import path from "node:path";
import { deflateSync } from "node:zlib";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listTree, treeHash } from "../../src/build/tree-policy.js";
import { freePort } from "../../src/local/postgres.js";
import { NEXT_CONFIG_FILE, patchNextDiskCacheText } from "../../src/patches/next-disk-cache.js";
import { fetchNotAnswering, waitFor } from "../../src/retry.js";
import { NEEDS_NPM_REGISTRY, npmRegistryReachable } from "../support/npm-registry.js";
import { SYNTHETIC_NEXT_CONFIG } from "../support/synthetic-upstream.js";

const registry = await npmRegistryReachable;

/** The Next MetaMCP v2.4.22's lockfile pins (15.3.0, 15.5.2 and 15.5.12 read the same switch: the patch's doc). */
const NEXT_VERSION = "15.4.8";
const REACT_VERSION = "19.1.2";

/** A 64×64 RGB PNG, made here: what `next/image` optimises (MetaMCP's sidebar logo is one). */
function png(): Buffer {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let x = 0xffffffff;
    for (const y of b) x = table[(x ^ y) & 255]! ^ (x >>> 8);
    return (x ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const w = 64;
  const raw = Buffer.alloc((w * 3 + 1) * w);
  for (let y = 0; y < w; y++)
    for (let x = 0; x < w; x++) raw.set([x * 4, y * 4, 128], y * (w * 3 + 1) + 1 + x * 3);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(w, 4);
  ihdr.set([8, 2], 8);
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/**
 * A small Next app with the two things MetaMCP's frontend could make Next write at run time: a `next/image`
 * (the image optimizer's cache) and a server-side `fetch` with `force-cache` (the incremental cache's
 * fetch-cache), in a page rendered per request.
 */
const APP_FILES: Record<string, string> = {
  "app/layout.js":
    'export default function RootLayout({ children }) {\n  return (<html lang="en"><body>{children}</body></html>);\n}\n',
  "app/page.js":
    'import Image from "next/image";\nexport default function Page() {\n  return (<main><Image src="/logo.png" alt="logo" width={48} height={48} /></main>);\n}\n',
  "app/data/page.js": `export const dynamic = "force-dynamic";
export default async function Data() {
  const r = await fetch(process.env.DATA_URL, { cache: "force-cache" });
  return (<main id="data">{await r.text()}</main>);
}
`,
};

interface Run {
  /** The standalone tree, laid out as our app tree has it (`.next/static` and `public/` beside server.js). */
  dir: string;
}

/** Our manifest's view of a tree: its files and their content hash (src/build/tree-policy.ts). */
function manifestOf(dir: string) {
  const files = listTree(dir);
  return { files: files.map((f) => f.path), sha256: treeHash(dir, files) };
}

describe.skipIf(!registry)(
  registry
    ? `a real Next ${NEXT_VERSION} standalone server leaves its tree as built`
    : `a real Next standalone server leaves its tree as built (${NEEDS_NPM_REGISTRY})`,
  () => {
    let root: string;
    let data: Server;
    let dataUrl: string;
    const runs: Record<"upstream" | "patched", Run> = {} as never;

    beforeAll(async () => {
      root = mkdtempSync(path.join(os.tmpdir(), "mmdb-next-cache-"));
      const app = path.join(root, "app");
      mkdirSync(path.join(app, "public"), { recursive: true });
      writeFileSync(
        path.join(app, "package.json"),
        '{ "name": "tiny", "private": true, "type": "module" }\n',
      );
      for (const [rel, text] of Object.entries(APP_FILES)) {
        mkdirSync(path.dirname(path.join(app, rel)), { recursive: true });
        writeFileSync(path.join(app, rel), text);
      }
      writeFileSync(path.join(app, "public/logo.png"), png());
      await execa(
        "npm",
        [
          "install",
          "--no-audit",
          "--no-fund",
          "--ignore-scripts",
          `next@${NEXT_VERSION}`,
          `react@${REACT_VERSION}`,
          `react-dom@${REACT_VERSION}`,
        ],
        { cwd: app, timeout: 300_000 },
      );
      // The same app built twice: with upstream's next.config.js, and with it as our patch leaves it.
      const upstreamConfig = SYNTHETIC_NEXT_CONFIG;
      const patchedConfig = patchNextDiskCacheText(NEXT_CONFIG_FILE, upstreamConfig, {
        schema: "metamcp_app",
        upstreamRef: "test",
      }).text;
      for (const [name, config] of [
        ["upstream", upstreamConfig],
        ["patched", patchedConfig],
      ] as const) {
        writeFileSync(path.join(app, "next.config.js"), config);
        rmSync(path.join(app, ".next"), { recursive: true, force: true });
        await execa("node", ["node_modules/next/dist/bin/next", "build"], {
          cwd: app,
          env: { NEXT_TELEMETRY_DISABLED: "1" },
          timeout: 300_000,
        });
        const dir = path.join(root, name);
        cpSync(path.join(app, ".next/standalone"), dir, { recursive: true, verbatimSymlinks: true });
        cpSync(path.join(app, ".next/static"), path.join(dir, ".next/static"), { recursive: true });
        cpSync(path.join(app, "public"), path.join(dir, "public"), { recursive: true });
        runs[name] = { dir };
      }
      data = createServer((_req, res) => res.end("fetched-once"));
      await new Promise<void>((resolve) => data.listen(0, "127.0.0.1", resolve));
      const address = data.address();
      dataUrl = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/data`;
    }, 900_000);

    afterAll(async () => {
      await new Promise((r) => (data ? data.close(r) : r(undefined)));
      if (root) rmSync(root, { recursive: true, force: true });
    });

    /** Starts server.js as the runtime does (cwd its folder, HOSTNAME 127.0.0.1), browses, stops it. */
    async function browse(run: Run): Promise<{ images: string[] }> {
      const port = await freePort();
      const server: ResultPromise = execa("node", ["server.js"], {
        cwd: run.dir,
        env: { PORT: String(port), HOSTNAME: "127.0.0.1", NEXT_TELEMETRY_DISABLED: "1", DATA_URL: dataUrl },
        reject: false,
        all: true,
      });
      try {
        const base = `http://127.0.0.1:${port}`;
        const html = await waitFor(
          async () => {
            if (server.exitCode !== null) throw new Error(`server.js exited ${server.exitCode}`);
            const r = await fetch(`${base}/`, { signal: AbortSignal.timeout(10_000) });
            return r.ok ? await r.text() : undefined;
          },
          { timeoutMs: 60_000, what: "Next to answer", transient: fetchNotAnswering },
        );
        // Every image URL the page offers (src and srcset), as a browser would ask for them.
        const urls = [...html.matchAll(/(?:src|srcSet)="([^"]+)"/g)]
          .flatMap((m) => m[1]!.split(","))
          .map((s) => s.trim().split(" ")[0]!.replaceAll("&amp;", "&"))
          .filter((u) => u.startsWith("/_next/image"));
        const images: string[] = [];
        for (const u of [...new Set(urls)]) {
          const r = await fetch(`${base}${u}`);
          expect(r.status, u).toBe(200);
          images.push(`${u} ${r.headers.get("content-type")}`);
          await r.arrayBuffer();
        }
        const page = await fetch(`${base}/data`);
        expect(await page.text()).toContain("fetched-once");
        return { images };
      } finally {
        server.kill("SIGTERM");
        await server;
      }
    }

    it("upstream's config: browsing writes Next's caches into the tree (the fault: .next/cache/images, fetch-cache)", async () => {
      const run = runs.upstream;
      const before = manifestOf(run.dir);
      const { images } = await browse(run);
      expect(images.length).toBeGreaterThan(0);
      const after = manifestOf(run.dir);
      const added = after.files.filter((f) => !before.files.includes(f));
      expect(
        added.some((f) => f.startsWith(".next/cache/images/")),
        added.join("\n"),
      ).toBe(true);
      expect(
        added.some((f) => f.startsWith(".next/cache/fetch-cache/")),
        added.join("\n"),
      ).toBe(true);
      expect(after.sha256).not.toBe(before.sha256);
    }, 120_000);

    it("patched (experimental.isrFlushToDisk false): the same browsing, images and cached fetch served, the tree byte-identical", async () => {
      const run = runs.patched;
      const before = manifestOf(run.dir);
      const { images } = await browse(run);
      expect(images.length).toBeGreaterThan(0);
      for (const i of images) expect(i).toMatch(/ image\//);
      // Twice: a second visit is served too (from memory, or optimised again), still without a write.
      await browse(run);
      expect(manifestOf(run.dir)).toEqual(before);
    }, 120_000);
  },
);
