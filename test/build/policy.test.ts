import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { readPinnedPackageManager } from "../../src/build/toolchain.js";
import {
  checkRuntimeLoads,
  forbiddenReason,
  isDroppedFile,
  prunePackage,
} from "../../src/build/tree-policy.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("app tree policy", () => {
  it("forbids secrets, caches, git and tests, but not what packages legitimately ship", () => {
    expect(forbiddenReason("metamcp/apps/frontend/.env")).toMatch(/environment file/);
    expect(forbiddenReason("metamcp/apps/frontend/.env.production")).toMatch(/environment file/);
    expect(forbiddenReason("metamcp/.git/config")).toMatch(/git/);
    expect(forbiddenReason("metamcp/apps/frontend/.next/cache/webpack/x.pack")).toMatch(/cache/);
    expect(forbiddenReason("metamcp/node_modules/.pnpm/lock.yaml")).toMatch(/cache/);
    expect(forbiddenReason("metamcp/apps/backend/dist/index.test.js")).toMatch(/test/);
    expect(forbiddenReason(".npmrc")).toMatch(/token/);
    expect(forbiddenReason("metamcp/apps/backend/dist/index.js")).toBeUndefined();
    expect(forbiddenReason("metamcp/node_modules/some-lib/test.spec.js")).toBeUndefined();
  });

  it("drops maps, declarations and build caches; prunes only the measured packages", () => {
    expect(isDroppedFile("dist/index.js.map")).toBe(true);
    expect(isDroppedFile("dist/index.d.ts")).toBe(true);
    expect(isDroppedFile(".turbo/turbo-build.log")).toBe(true);
    expect(isDroppedFile("dist/index.js")).toBe(false);
    expect(prunePackage("sharp")).toMatch(/10 MB/);
    expect(prunePackage("@img/sharp-libvips-linux-x64")).toMatch(/10 MB/);
    expect(prunePackage("@types/node")).toMatch(/compile-time/);
    expect(prunePackage("express")).toBeUndefined();
  });
});

describe("readPinnedPackageManager", () => {
  function tree(packageManager: unknown): string {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "package.json"), JSON.stringify({ packageManager }));
    return dir;
  }
  it("reads an exact pnpm version, dropping a corepack hash", () => {
    expect(readPinnedPackageManager(tree("pnpm@9.0.0")).version).toBe("9.0.0");
    expect(readPinnedPackageManager(tree("pnpm@10.12.1+sha512.abc")).version).toBe("10.12.1");
  });
  it("refuses anything else as upstream drift (exit 3)", () => {
    for (const bad of [undefined, "yarn@4.0.0", "pnpm@^9", "pnpm@latest"]) {
      expect(() => readPinnedPackageManager(tree(bad))).toThrow(expect.objectContaining({ exitCode: 3 }));
    }
  });

  it("fails the build (drift, exit 3) when the backend does not provide the drizzle-orm the runtime loads", () => {
    const app = tempDir();
    const backend = path.join(app, "metamcp/apps/backend");
    mkdirSync(backend, { recursive: true });
    writeFileSync(path.join(backend, "package.json"), '{"name":"backend","type":"module"}\n');
    let caught: unknown;
    try {
      checkRuntimeLoads(app);
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: "backend_lacks_runtime_import", exitCode: 3 });
    expect((caught as Error).message).toContain("drizzle-orm/node-postgres");

    mkdirSync(path.join(backend, "node_modules"));
    symlinkSync(
      path.join(PROJECT_ROOT, "node_modules/drizzle-orm"),
      path.join(backend, "node_modules/drizzle-orm"),
    );
    expect(() => checkRuntimeLoads(app)).not.toThrow();
  });
});
