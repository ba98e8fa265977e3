import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { backendLoopbackPatch } from "../../src/patches/backend-loopback.js";
import {
  BACKEND_ENTRY_FILE,
  DATABRICKS_TOOLS_PATCH_ID,
  databricksToolsPatch,
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
      expect(result.files).toEqual([{ path: BACKEND_ENTRY_FILE, edits: 1 }]);
      const after = tree.read(BACKEND_ENTRY_FILE)!;
      expect(firstCode(after)).toBe(OUR_IMPORT);
      expect(after.endsWith(before)).toBe(true);
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
      for (const ref of refs) {
        let entry: string;
        try {
          entry = git("cat-file", "blob", `${ref}:${BACKEND_ENTRY_FILE}`);
        } catch {
          continue; // a tag whose blobs this mirror lacks
        }
        const tree = new MemoryTree({ [BACKEND_ENTRY_FILE]: entry, [TOOLS_MODULE_FILE]: MODULE });
        const rctx = { ...ctx, upstreamRef: ref };
        for (const p of [backendLoopbackPatch, databricksToolsPatch]) p.apply(tree, rctx);
        databricksToolsPatch.verify(tree, rctx);
        expect(firstCode(tree.read(BACKEND_ENTRY_FILE)!), ref).toBe(OUR_IMPORT);
        patched++;
      }
      expect(patched).toBeGreaterThanOrEqual(40);
    },
    120_000,
  );
});
