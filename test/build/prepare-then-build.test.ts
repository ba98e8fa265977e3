import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { runCli } from "../support/cli.js";
import { NEEDS_NPM_REGISTRY, npmRegistryReachable } from "../support/npm-registry.js";
import { writeStubRuntimeBundle } from "../support/stub-runtime-bundle.js";
import { syntheticAppFiles } from "../support/synthetic-app.js";
import { createSyntheticUpstream } from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * The golden path's first two steps chained, as a user runs them: `prepare` clones and patches the
 * synthetic MetaMCP (with a buildable backend and frontend), then `build` installs, builds and assembles.
 */
const registry = await npmRegistryReachable;

describe.skipIf(!registry)(
  registry ? "prepare, then build" : `prepare, then build (${NEEDS_NPM_REGISTRY})`,
  () => {
    it("ships the patched migrations and the prepare manifest in the app tree", async () => {
      const upstream = createSyntheticUpstream({
        extraFiles: (version) => syntheticAppFiles(version, { migrations: false }),
      });
      onTestFinished(() => upstream.cleanup());
      const root = tempDir("mmdb-prep-build-");
      const runtime = writeStubRuntimeBundle(root);
      const env = { METAMCP_CACHE_DIR: path.join(root, "cache") };

      const prepared = await runCli(["prepare", "--repo", upstream.url, "--build-dir", "build/metamcp"], {
        cwd: root,
        env,
      });
      expect(prepared.exitCode, prepared.stderr).toBe(0);

      const built = await runCli(["--json", "build", "--runtime-bundle", runtime], { cwd: root, env });
      expect(built.exitCode, built.stderr).toBe(0);
      const appDir = path.join(root, "build/app");
      expect(JSON.parse(built.stdout)).toMatchObject({ status: "built", appDir });

      const manifest = JSON.parse(
        readFileSync(path.join(appDir, ".metamcp-databricks/manifest.json"), "utf8"),
      );
      expect(manifest.resolvedRef).toBe(upstream.latestStable);
      expect(manifest.patches.length).toBeGreaterThan(0);
      expect(manifest.build.tree.files).toBeGreaterThan(0);

      const migrations = path.join(appDir, "metamcp/apps/backend/drizzle");
      const sql = readdirSync(migrations)
        .filter((f) => f.endsWith(".sql"))
        .map((f) => readFileSync(path.join(migrations, f), "utf8"))
        .join("\n");
      expect(sql).toContain('"metamcp_app".');
      expect(sql).not.toContain('"public".');
      expect(readdirSync(path.join(migrations, "meta"))).toContain("_journal.json");
    });
  },
);
