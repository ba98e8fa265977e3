import { cpSync, mkdirSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("bin/metamcp-databricks.js", () => {
  it("on a clone that was never built, says to run `npm run build` (exit 2), not ERR_MODULE_NOT_FOUND", async () => {
    const clone = tempDir("mmdb-unbuilt-");
    mkdirSync(path.join(clone, "bin"));
    cpSync(
      path.join(PROJECT_ROOT, "bin/metamcp-databricks.js"),
      path.join(clone, "bin/metamcp-databricks.js"),
    );
    const r = await execa("node", [path.join(clone, "bin/metamcp-databricks.js"), "--version"], {
      reject: false,
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("npm run build");
    expect(r.stderr).not.toContain("ERR_MODULE_NOT_FOUND");
  });

  it("once built, runs the CLI", async () => {
    const r = await execa("node", [path.join(PROJECT_ROOT, "bin/metamcp-databricks.js"), "--version"]);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
