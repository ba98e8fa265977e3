import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../support/cli.js";

/**
 * Only the runtime's own entry file (src/runtime/entry.ts → dist/runtime/start.mjs) starts the runtime.
 * The CLI bundles the runtime's `runApp` for `metamcp-databricks start`; that chunk must be a plain module:
 * loading it (as `--version` or any command sharing a chunk may) never starts the in-app runtime.
 * Runs against the build `pretest` made (dist/).
 */
const DIST = path.join(PROJECT_ROOT, "dist");
/** An environment with none of the platform's variables: a started runtime exits 2 naming the first. */
const BARE_ENV = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" };

function runNode(file: string, args: string[] = []) {
  return execa(process.execPath, [file, ...args], {
    env: BARE_ENV,
    extendEnv: false,
    reject: false,
    timeout: 60_000,
  });
}

describe("the runtime's entry point", () => {
  it("the CLI's chunks holding runApp load without starting the runtime", async () => {
    const chunks = readdirSync(DIST).filter(
      (f) =>
        f.endsWith(".js") &&
        f !== "cli.js" &&
        /\bfunction runApp\(/.test(readFileSync(path.join(DIST, f), "utf8")),
    );
    expect(chunks.length, "the CLI bundles runApp for `start`").toBeGreaterThan(0);
    for (const chunk of chunks) {
      // Run as the main module: an "am I the entry point" check inside it would fire here.
      const r = await runNode(path.join(DIST, chunk));
      expect({ chunk, code: r.exitCode, out: r.stdout + r.stderr }).toEqual({ chunk, code: 0, out: "" });
    }
  });

  it("`--version` answers without the platform's variables", async () => {
    const r = await runNode(path.join(PROJECT_ROOT, "bin/metamcp-databricks.js"), ["--version"]);
    expect(r.stderr).toBe("");
    expect(r.exitCode).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it("runtime/start.mjs does start the runtime (and says what is missing)", async () => {
    const r = await runNode(path.join(DIST, "runtime/start.mjs"));
    expect(r.exitCode).toBe(2);
    expect(r.stdout + r.stderr).toMatch(/DATABRICKS_APP_PORT/);
  });
});
