import { existsSync, statfsSync } from "node:fs";
import path from "node:path";
import type { LocalPaths } from "./state.js";

/**
 * A full disk under the state dir stops PostgreSQL (a PANIC at its next checkpoint or WAL file) and every
 * write of ours (the log, run.json), so nothing said why. These tell it afterwards: they explain a failure
 * that happened (PostgreSQL gone, ENOSPC), they never decide to stop anything.
 */
const NEARLY_NOTHING = 1024 * 1024;

function nearestExisting(dir: string): string | undefined {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    if (existsSync(d)) return d;
    if (d === path.dirname(d)) return undefined;
  }
}

/** Bytes an unprivileged user (PostgreSQL's own, as root) may still write where `dir` is. */
export function freeBytes(dir: string): number | undefined {
  const at = nearestExisting(dir);
  if (!at) return undefined;
  try {
    const s = statfsSync(at);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** "no space left on <dir> (…)" for the state dir or the data dir (it may live elsewhere), when full. */
export function noSpaceProblem(paths: LocalPaths): string | undefined {
  for (const dir of [paths.pgDir, paths.root]) {
    const free = freeBytes(dir);
    if (free !== undefined && free < NEARLY_NOTHING)
      return `no space left on ${dir} (${free} bytes free on its filesystem)`;
  }
  return undefined;
}

export const NO_SPACE_HINT =
  "free some space there (`df -h` shows the filesystem), then `local up` again: the database was kept";

export function isNoSpaceError(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === "ENOSPC";
}

/** PostgreSQL's own words for it (a PANIC or ERROR line). */
export function isNoSpaceLine(line: string): boolean {
  return /No space left on device/i.test(line);
}
