import { DriftError } from "../errors.js";
import { forget, parseTypeScript, syntaxErrors } from "./text-edits.js";
import type { FileTree } from "./tree.js";
import type { SourceFile } from "./ts-morph.js";

/** One file a patch changed, as the prepare manifest records it. */
export interface PatchFileRecord {
  /** Path relative to the tree root, `/`-separated. */
  path: string;
  /** How many edits the patch made in that file. */
  edits: number;
}

/** One applied patch, as the prepare manifest records it (the patches' result; prepare writes it). */
export interface PatchRecord {
  id: string;
  description: string;
  files: PatchFileRecord[];
  /** What the patch found and changed, discovered from the tree (e.g. `{ tables: 16, enums: 3 }`). */
  counts?: Record<string, number>;
  /** What a person must know about this release, e.g. a feature it lacks. */
  note?: string;
}

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

/**
 * Parses `text` as TypeScript for `use`, then lets the syntax tree go (ts-morph keeps every parsed file
 * otherwise). The patches' common preamble, with {@link parseValid} for their verify step.
 */
export function withSourceFile<T>(file: string, text: string, use: (sf: SourceFile) => T): T {
  const sf = parseTypeScript(file, text);
  try {
    return use(sf);
  } finally {
    forget(sf);
  }
}

/** As {@link withSourceFile}, failing with drift when the (patched) file is not valid TypeScript. */
export function withValidSourceFile<T>(
  patchId: string,
  file: string,
  text: string,
  ctx: PatchContext,
  use: (sf: SourceFile) => T,
): T {
  return withSourceFile(file, text, (sf) => {
    const errors = syntaxErrors(sf);
    if (errors.length) throw drift(patchId, file, `valid TypeScript, got ${errors[0]}`, ctx);
    return use(sf);
  });
}

/**
 * `apply` of a patch that edits one file: reads it (drift when missing), edits it, writes it back only when
 * it changed, and reports the file with its edit count (none when nothing was edited).
 */
export function editFile<R extends { text: string; edits: number }>(
  tree: FileTree,
  file: string,
  patchId: string,
  ctx: PatchContext,
  edit: (text: string) => R,
): { original: string; files: PatchFileRecord[]; result: R } {
  const original = requireFile(tree, file, patchId, ctx);
  const result = edit(original);
  if (result.text !== original) tree.write(file, result.text);
  return { original, files: result.edits ? [{ path: file, edits: result.edits }] : [], result };
}

/** A module of ours the patch writes whole (one edit when it was missing or different). */
export function writeModule(tree: FileTree, file: string, text: string): PatchFileRecord[] {
  if (tree.read(file) === text) return [];
  tree.write(file, text);
  return [{ path: file, edits: 1 }];
}

/**
 * A patch that edits one file: `patchText` edits its text (drift when the shape is not known), `verifyText`
 * checks the final tree's text. Most patches are this; the rest write their own `apply`/`verify`.
 */
export function oneFilePatch(o: {
  id: string;
  description: string;
  file: string;
  patchText(file: string, text: string, ctx: PatchContext): { text: string; edits: number };
  verifyText(file: string, text: string, ctx: PatchContext): void;
}): Patch {
  return {
    id: o.id,
    description: o.description,
    apply(tree, ctx) {
      return { files: editFile(tree, o.file, o.id, ctx, (text) => o.patchText(o.file, text, ctx)).files };
    },
    verify(tree, ctx) {
      o.verifyText(o.file, requireFile(tree, o.file, o.id, ctx), ctx);
    },
  };
}
