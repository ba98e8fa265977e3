import { DriftError } from "../errors.js";
import type { PatchFileRecord } from "../upstream/manifest.js";
import type { FileTree } from "./tree.js";

export interface PatchContext {
  /** The custom PostgreSQL schema (e.g. `metamcp_app`). */
  schema: string;
  /** The upstream ref being patched, for drift messages (tag, branch or SHA). */
  upstreamRef: string;
}

export interface PatchResult {
  /** Every file the patch changed and how many edits it made there (0-edit files are left out). */
  files: PatchFileRecord[];
  /** What it found, discovered from the tree (e.g. `{ tables: 16, enums: 3 }`). */
  counts?: Record<string, number>;
  /** What a person must know about this release, e.g. a feature it lacks (prepare prints it). */
  note?: string;
}

/**
 * One change to the upstream tree. `apply` edits and reports; `verify` (run after every patch was
 * applied) throws a `DriftError` when the tree does not hold what the patch promises. Applying a patch
 * to an already patched tree changes nothing.
 */
export interface Patch {
  id: string;
  description: string;
  apply(tree: FileTree, ctx: PatchContext): PatchResult;
  verify(tree: FileTree, ctx: PatchContext): void;
}

/** The one way patches report drift: which file, what was expected, at which upstream ref. */
export function drift(patchId: string, file: string, expectation: string, ctx: PatchContext): DriftError {
  return new DriftError(
    "upstream_drift",
    `upstream drift in ${file} (MetaMCP ${ctx.upstreamRef}, patch ${patchId}): expected ${expectation}`,
    "MetaMCP changed in a way this tool does not know: pin METAMCP_REF to a release it supports " +
      "(docs/prepare.md), or update the patch in src/patches/",
  );
}

/** Reads a file a patch needs, or fails with drift naming it. */
export function requireFile(tree: FileTree, file: string, patchId: string, ctx: PatchContext): string {
  const text = tree.read(file);
  if (text === undefined) throw drift(patchId, file, "the file to exist", ctx);
  return text;
}
