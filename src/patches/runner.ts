import type { Patch, PatchContext, PatchRecord } from "./patch.js";
import type { FileTree } from "./tree.js";

export interface PatchRunReport extends PatchRecord {
  durationMs: number;
}

/** Applies every patch in order, then verifies every one against the final tree. */
export function applyPatches(
  tree: FileTree,
  patches: readonly Patch[],
  ctx: PatchContext,
  onApplied?: (report: PatchRunReport) => void,
): PatchRunReport[] {
  const ids = new Set<string>();
  for (const p of patches) {
    if (ids.has(p.id)) throw new Error(`two patches share the id ${p.id}`);
    ids.add(p.id);
  }
  const reports: PatchRunReport[] = [];
  for (const patch of patches) {
    const started = performance.now();
    const result = patch.apply(tree, ctx);
    const report: PatchRunReport = {
      id: patch.id,
      description: patch.description,
      files: [...result.files].sort((a, b) => a.path.localeCompare(b.path)),
      ...(result.counts ? { counts: result.counts } : {}),
      ...(result.note ? { note: result.note } : {}),
      durationMs: Math.round(performance.now() - started),
    };
    reports.push(report);
    onApplied?.(report);
  }
  verifyPatches(tree, patches, ctx);
  return reports;
}

export function verifyPatches(tree: FileTree, patches: readonly Patch[], ctx: PatchContext): void {
  for (const patch of patches) patch.verify(tree, ctx);
}
