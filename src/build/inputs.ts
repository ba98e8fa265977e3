import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { stringify } from "safe-stable-stringify";
import { listTree } from "./tree-policy.js";

/** Bump when the compile steps change meaning (forces a rebuild of upstream). */
const COMPILE_RECIPE = "compile-v1";
/** Bump when the app-tree layout or assembly rules change (forces a re-assembly). */
const ASSEMBLY_RECIPE = "assemble-v1";

export interface BuildInputs {
  /** The prepared manifest as read (a `build` section, if any, is ignored). */
  manifest: object;
  lockfile: Buffer;
  /** Our overlay/ folder (copied into the tree by prepare); may not exist. */
  overlayDir: string;
  toolVersion: string;
  pnpmVersion: string;
  runtimeBundle: Buffer;
}

function hashDir(h: ReturnType<typeof createHash>, dir: string): void {
  if (!existsSync(dir)) {
    h.update("(no overlay)\n");
    return;
  }
  for (const f of listTree(dir)) {
    h.update(`${f.path}\0`);
    h.update(readFileSync(path.join(dir, f.path)));
    h.update("\n");
  }
}

/**
 * What decides whether upstream must be installed and built again: the prepared manifest (upstream URL,
 * commit, patches), our overlay, the lockfile, the tool's version and the pnpm version.
 */
export function compileHash(inputs: Omit<BuildInputs, "runtimeBundle">): string {
  const h = createHash("sha256");
  const { build: _ignored, ...manifest } = inputs.manifest as Record<string, unknown>;
  h.update(`${COMPILE_RECIPE}\ntool ${inputs.toolVersion}\npnpm ${inputs.pnpmVersion}\n`);
  // Keys sorted at every level: the same manifest hashes the same whatever order its fields were written in.
  h.update(`manifest ${stringify(manifest)}\n`);
  h.update("lockfile ");
  h.update(inputs.lockfile);
  h.update("\noverlay\n");
  hashDir(h, inputs.overlayDir);
  return h.digest("hex");
}

/**
 * What decides whether the app tree is up to date: the compile hash, our runtime bundle, and a fingerprint
 * of this tool's own code (so a changed assembly rule re-assembles without rebuilding upstream).
 */
export function appInputHash(compile: string, runtimeBundle: Buffer, toolFingerprint = ""): string {
  return createHash("sha256")
    .update(`${ASSEMBLY_RECIPE}\n${compile}\n${toolFingerprint}\n`)
    .update(runtimeBundle)
    .digest("hex");
}

/** sha256 of a file (the running CLI bundle, for the tool fingerprint); empty when it is not there. */
export function fileFingerprint(file: string): string {
  return existsSync(file) ? createHash("sha256").update(readFileSync(file)).digest("hex") : "";
}
