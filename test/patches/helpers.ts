import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { DriftError } from "../../src/errors.js";
import { IDENTITY_MODULE_FILE } from "../../src/patches/databricks-identity.js";
import { ENDPOINT_IDENTITY_MODULE_FILE } from "../../src/patches/endpoint-identity-module.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

/** What prepare passes every patch; v9.9.9 so a message naming the release is told from one naming a file. */
export const PATCH_CTX = { schema: "metamcp_app", upstreamRef: "v9.9.9" };

/** Our identity module as prepare copies it in from overlay/ (the patched code imports it). */
export const IDENTITY_MODULE = readFileSync(path.join(PROJECT_ROOT, "overlay", IDENTITY_MODULE_FILE), "utf8");
/** Our endpoint-identity module, likewise. */
export const ENDPOINT_IDENTITY_MODULE = readFileSync(
  path.join(PROJECT_ROOT, "overlay", ENDPOINT_IDENTITY_MODULE_FILE),
  "utf8",
);

/** Runs `fn`, which must stop with upstream drift (exit 3); returns the error for its message. */
export function driftOf(fn: () => unknown): DriftError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DriftError);
    expect((err as DriftError).exitCode).toBe(3);
    return err as DriftError;
  }
  throw new Error("expected upstream drift (DriftError), but it succeeded");
}

/** Drift naming `file` and matching `what` (what the patch expected, what it found). */
export function expectDrift(fn: () => unknown, file: string, what: RegExp | string): void {
  const message = driftOf(fn).message;
  expect(message).toContain(file);
  if (typeof what === "string") expect(message).toContain(what);
  else expect(message).toMatch(what);
}

/**
 * A temp ESM package whose node_modules is ours, so patched upstream files run (tsx) or type-check (tsc)
 * against the same drizzle-orm, pg, express as MetaMCP's: `files` are written relative to it.
 */
export function linkedPackageDir(prefix: string, files: Record<string, string>): string {
  const dir = tempDir(prefix);
  writeFileSync(path.join(dir, "package.json"), `${JSON.stringify({ type: "module" })}\n`);
  symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

/** Our TypeScript compiler, to run as `node TSC ...`. */
export const TSC = path.join(PROJECT_ROOT, "node_modules/typescript/bin/tsc");
