import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { backendLoopbackPatch } from "../../src/patches/backend-loopback.js";
import {
  BACKEND_ENTRY_FILE,
  DATABRICKS_TOOLS_PATCH_ID,
  databricksToolsPatch,
  POOL_FILE,
  TOOLS_MODULE_FILE,
} from "../../src/patches/databricks-tools.js";
import { MemoryTree, PATCHES } from "../../src/patches/index.js";
import { PROJECT_ROOT } from "../support/cli.js";
import {
  type BackendIndexForm,
  syntheticBackendIndex,
  syntheticVersionFiles,
} from "../support/synthetic-upstream.js";
import { expectDrift, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;
const MODULE = readFileSync(path.join(PROJECT_ROOT, "overlay", TOOLS_MODULE_FILE), "utf8");
const OUR_IMPORT = 'import "./databricks-tools";';
/** Every form a release's backend entry had (v2.0.0–v2.0.3, v2.0.4–v2.0.6, v2.1.0–v2.5.x, main). */
const FORMS: BackendIndexForm[] = ["port-var", "port-literal", "async-callback", "start-function"];

const firstCode = (text: string) =>
  text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("//"))[0];

describe("patch databricks-tools on MetaMCP's backend entry shapes", () => {
  for (const form of FORMS) {
    it(`${form}: our module is the entry's first import; upstream's text is unchanged after it; idempotent`, () => {
      const before = syntheticBackendIndex(form);
      const tree = new MemoryTree({ [BACKEND_ENTRY_FILE]: before, [TOOLS_MODULE_FILE]: MODULE });
      const result = databricksToolsPatch.apply(tree, ctx);
      expect(result.files).toEqual([{ path: BACKEND_ENTRY_FILE, edits: 2 }]);
      const after = tree.read(BACKEND_ENTRY_FILE)!;
      expect(firstCode(after)).toBe(OUR_IMPORT);
      // The request context is the app's first middleware: right after `const app = express();`.
      expect(after).toMatch(/const app = express\(\);\n\/\/ [^\n]*\napp\.use\(__databricksToolsContext\);/);
      expect(
        after
          .replace(/^(\/\/[^\n]*\n)?import[^\n]*databricks-tools[^\n]*\n/gm, "")
          .replace(/\n\/\/ [^\n]*\napp\.use\(__databricksToolsContext\);/, ""),
      ).toBe(before);
      databricksToolsPatch.verify(tree, ctx);
      const snapshot = tree.toObject();
      expect(databricksToolsPatch.apply(tree, ctx).files).toEqual([]);
      expect(tree.toObject()).toEqual(snapshot);
    });
  }

  it("with every other patch applied to a whole synthetic release (the order prepare uses), ours stays first", () => {
    for (const label of ["v2.0.0", "v2.1.0", "v2.2.0", "head"]) {
      const files = syntheticVersionFiles(label, [], { label, tables: [], enums: [] } as never);
      const tree = new MemoryTree({ ...files, [TOOLS_MODULE_FILE]: MODULE });
      for (const p of PATCHES) {
        try {
          p.apply(tree, ctx);
        } catch {
          // other patches' shapes this minimal release lacks are their own tests' business
        }
      }
      const entry = tree.read(BACKEND_ENTRY_FILE)!;
      expect(firstCode(entry), label).toBe(OUR_IMPORT);
      // The other patches that edit this file did: endpoint-identity's import comes after ours.
      expect(entry, label).toContain("app.listen(");
      if (label === "v2.2.0" || label === "head")
        expect(entry.indexOf("./databricks-endpoint-identity"), label).toBeGreaterThan(
          entry.indexOf(OUR_IMPORT),
        );
      databricksToolsPatch.verify(tree, ctx);
    }
    expect(PATCHES.at(-1)?.id).toBe(DATABRICKS_TOOLS_PATCH_ID);
  });

  it("drift fails loudly (exit 3) naming the file: no entry, an entry without express, our import moved down, our module missing", () => {
    expectDrift(
      () => databricksToolsPatch.apply(new MemoryTree({ [TOOLS_MODULE_FILE]: MODULE }), ctx),
      BACKEND_ENTRY_FILE,
      /the file to exist/,
    );
    const noExpress = new MemoryTree({
      [BACKEND_ENTRY_FILE]: 'import { serve } from "hono";\nserve();\n',
      [TOOLS_MODULE_FILE]: MODULE,
    });
    expectDrift(
      () => databricksToolsPatch.apply(noExpress, ctx),
      BACKEND_ENTRY_FILE,
      /import express from "express"/,
    );
    const moved = new MemoryTree({
      [BACKEND_ENTRY_FILE]: `import express from "express";\n${OUR_IMPORT}\n`,
      [TOOLS_MODULE_FILE]: MODULE,
    });
    expectDrift(
      () => databricksToolsPatch.apply(moved, ctx),
      BACKEND_ENTRY_FILE,
      /first statement, found it later/,
    );
    expectDrift(() => databricksToolsPatch.verify(moved, ctx), BACKEND_ENTRY_FILE, /as the first statement/);
    const patched = new MemoryTree({ [BACKEND_ENTRY_FILE]: syntheticBackendIndex("async-callback") });
    databricksToolsPatch.apply(patched, ctx);
    expectDrift(() => databricksToolsPatch.verify(patched, ctx), TOOLS_MODULE_FILE, /the file to exist/);
    const broken = new MemoryTree({
      [BACKEND_ENTRY_FILE]: syntheticBackendIndex("async-callback"),
      [TOOLS_MODULE_FILE]: MODULE.replace("export function installDatabricksToolsFetch(", "function x("),
    });
    databricksToolsPatch.apply(broken, ctx);
    expectDrift(
      () => databricksToolsPatch.verify(broken, ctx),
      TOOLS_MODULE_FILE,
      /installDatabricksToolsFetch/,
    );
  });
});

/** MetaMCP's pool shape (v2.1.0 … main, mcp-server-pool.ts), synthetic: what the guard edits. */
const SYNTHETIC_POOL = `import { connectMetaMcpClient } from "./client";

export class McpServerPool {
  private idleSessions: Record<string, unknown> = {};
  async getSession(sessionId: string, serverUuid: string, params: { url?: string }) {
    const idleClient = this.idleSessions[serverUuid];
    if (idleClient) {
      delete this.idleSessions[serverUuid];
      this.createIdleSessionAsync(serverUuid, params);
      return idleClient;
    }
    const c = await connectMetaMcpClient(params);
    this.createIdleSessionAsync(serverUuid, params);
    return c;
  }
  private async createIdleSession(serverUuid: string, params: { url?: string }): Promise<void> {
    if (this.idleSessions[serverUuid]) return;
    this.idleSessions[serverUuid] = await connectMetaMcpClient(params);
  }
  private createIdleSessionAsync(serverUuid: string, params: { url?: string }): void {
    void connectMetaMcpClient(params).then((c) => { this.idleSessions[serverUuid] = c; });
  }
}
`;

describe("patch databricks-tools on MetaMCP's idle pool", () => {
  it("per-person servers are never pre-opened nor handed from the idle pool; idempotent; drift exits 3", () => {
    const tree = new MemoryTree({
      [BACKEND_ENTRY_FILE]: syntheticBackendIndex("async-callback"),
      [TOOLS_MODULE_FILE]: MODULE,
      [POOL_FILE]: SYNTHETIC_POOL,
    });
    expect(databricksToolsPatch.apply(tree, ctx).files).toEqual([
      { path: BACKEND_ENTRY_FILE, edits: 2 },
      { path: POOL_FILE, edits: 4 },
    ]);
    const pool = tree.read(POOL_FILE)!;
    expect(pool).toContain(
      'import { databricksNoIdle as __databricksNoIdle } from "../../databricks-tools";',
    );
    expect(pool).toMatch(
      /createIdleSession\(serverUuid: string, params: \{ url\?: string \}\): Promise<void> \{\n {4}if \(__databricksNoIdle\(params\)\) return;/,
    );
    expect(pool).toMatch(
      /createIdleSessionAsync\([^)]*\): void \{\n {4}if \(__databricksNoIdle\(params\)\) return;/,
    );
    expect(pool).toContain(
      "const idleClient = __databricksNoIdle(params) ? undefined : this.idleSessions[serverUuid];",
    );
    databricksToolsPatch.verify(tree, ctx);
    const snapshot = tree.toObject();
    expect(databricksToolsPatch.apply(tree, ctx).files).toEqual([]);
    expect(tree.toObject()).toEqual(snapshot);

    const renamed = new MemoryTree({
      [BACKEND_ENTRY_FILE]: syntheticBackendIndex("async-callback"),
      [TOOLS_MODULE_FILE]: MODULE,
      [POOL_FILE]: SYNTHETIC_POOL.replace(
        "const idleClient = this.idleSessions",
        "const idle = this.idleSessions",
      ),
    });
    expectDrift(() => databricksToolsPatch.apply(renamed, ctx), POOL_FILE, /const idleClient/);
    const moved = new MemoryTree({
      [BACKEND_ENTRY_FILE]: syntheticBackendIndex("async-callback"),
      [TOOLS_MODULE_FILE]: MODULE,
      "apps/backend/src/lib/metamcp/pool2.ts": SYNTHETIC_POOL,
    });
    expectDrift(
      () => databricksToolsPatch.apply(moved, ctx),
      "apps/backend/src/lib/metamcp/pool2.ts",
      /idle pool only/,
    );
    const unguarded = new MemoryTree(snapshot);
    unguarded.write(POOL_FILE, pool.replace("    if (__databricksNoIdle(params)) return;\n", ""));
    expectDrift(() => databricksToolsPatch.verify(unguarded, ctx), POOL_FILE, /first in createIdleSession/);
  });

  it("the guard's rule: only URLs whose fragment says identity=user", async () => {
    const { databricksNoIdle } = await import("../../overlay/apps/backend/src/databricks-tools.js");
    expect(databricksNoIdle({ url: "https://ws.example/api/2.0/mcp/genie/s#identity=user" })).toBe(true);
    expect(databricksNoIdle({ url: "https://ws.example/api/2.0/mcp/genie/s#x=1&identity=user" })).toBe(true);
    expect(databricksNoIdle({ url: "https://ws.example/api/2.0/mcp/genie/s" })).toBe(false);
    expect(databricksNoIdle({ url: "https://ws.example/api/2.0/mcp/genie/s?identity=user" })).toBe(false);
    expect(databricksNoIdle({ url: null })).toBe(false);
    expect(databricksNoIdle(undefined)).toBe(false);
  });
});

/**
 * Upstream's real backend entry, read from the mirror when this machine has one (never copied into the
 * repo): every `v2.*` tag and main must patch and verify, together with the other patches of that file.
 */
const MIRROR = process.env.METAMCP_MIRROR_GIT_DIR ?? "/work/.mirror/metatool-ai+metamcp/repo";
const mirrorSkip = existsSync(MIRROR) ? undefined : `skipped: needs the upstream mirror at ${MIRROR}`;

describe("on MetaMCP's real code", () => {
  it.skipIf(!!mirrorSkip)(
    `every v2.* tag and main patch and verify${mirrorSkip ? ` (${mirrorSkip})` : ""}`,
    () => {
      const git = (...args: string[]) =>
        execFileSync("git", ["--git-dir", MIRROR, ...args], {
          encoding: "utf8",
          maxBuffer: 64 * 1024 * 1024,
        });
      const refs = [...git("tag", "--list", "v2.*").split("\n").filter(Boolean), "main"];
      let patched = 0;
      let pools = 0;
      for (const ref of refs) {
        let entry: string;
        try {
          entry = git("cat-file", "blob", `${ref}:${BACKEND_ENTRY_FILE}`);
        } catch {
          continue; // a tag whose blobs this mirror lacks
        }
        let pool: string | undefined;
        try {
          pool = git("cat-file", "blob", `${ref}:${POOL_FILE}`);
        } catch {
          pool = undefined; // v2.0.0 and v2.5.x keep no idle pool
        }
        const tree = new MemoryTree({
          [BACKEND_ENTRY_FILE]: entry,
          [TOOLS_MODULE_FILE]: MODULE,
          ...(pool ? { [POOL_FILE]: pool } : {}),
        });
        const rctx = { ...ctx, upstreamRef: ref };
        for (const p of [backendLoopbackPatch, databricksToolsPatch]) p.apply(tree, rctx);
        databricksToolsPatch.verify(tree, rctx);
        expect(firstCode(tree.read(BACKEND_ENTRY_FILE)!), ref).toBe(OUR_IMPORT);
        if (pool) {
          const guarded = tree.read(POOL_FILE)!;
          expect(guarded.match(/if \(__databricksNoIdle\(params\)\) return;/g)?.length, ref).toBe(2);
          expect(guarded, ref).toContain(
            "__databricksNoIdle(params) ? undefined : this.idleSessions[serverUuid]",
          );
          pools++;
        }
        patched++;
      }
      expect(patched).toBeGreaterThanOrEqual(40);
      expect(pools).toBeGreaterThanOrEqual(30);
    },
    120_000,
  );
});
