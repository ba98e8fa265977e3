import { rmSync } from "node:fs";
import { git } from "./git.js";

/**
 * Writes the files of `commit` into `dest` (which must exist and be empty), without a `.git`: a private
 * index file keeps the cache mirror untouched, so concurrent prepares do not step on each other.
 */
export async function exportCommit(gitDir: string, commit: string, dest: string): Promise<void> {
  const index = `${dest}.index`;
  const env = { GIT_INDEX_FILE: index };
  try {
    await git(["--work-tree", dest, "read-tree", commit], { gitDir, env, cwd: dest });
    await git(["--work-tree", dest, "checkout-index", "--all", "--force"], { gitDir, env, cwd: dest });
  } finally {
    rmSync(index, { force: true });
  }
}
