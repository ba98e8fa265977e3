import { rmSync } from "node:fs";
import { git } from "./git.js";
import type { RepoCredentials } from "./repo-url.js";

/**
 * Writes the files of `commit` into `dest` (which must exist and be empty), without a `.git`: a private
 * index file keeps the cache mirror's own index untouched, so concurrent prepares do not step on each other.
 * `read-tree -u` fetches the files a partial mirror lacks in one batch (git writes them into the mirror's
 * object store, which is safe beside other readers and fetchers).
 */
export async function exportCommit(
  gitDir: string,
  commit: string,
  dest: string,
  credentials?: RepoCredentials,
): Promise<void> {
  const index = `${dest}.index`;
  const env = { GIT_INDEX_FILE: index };
  try {
    await git(["--work-tree", dest, "read-tree", "--reset", "-u", commit], {
      gitDir,
      env,
      cwd: dest,
      credentials,
    });
  } finally {
    rmSync(index, { force: true });
  }
}
