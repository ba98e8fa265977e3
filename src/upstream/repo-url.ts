import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { type RepoLocation, SCP_LIKE, splitRepoCredentials, URL_LIKE } from "../config/repo-credentials.js";
import { EXIT, UserError } from "../errors.js";

// Splitting credentials off the configured URL is the config's job (it masks them the moment it reads them).
export { type RepoCredentials, type RepoLocation, splitRepoCredentials } from "../config/repo-credentials.js";

/**
 * Normalises what the user gave (`--repo` / `METAMCP_REPO_URL`): a local path becomes absolute (so the cache
 * key and the manifest do not depend on the cwd); URLs lose a trailing slash and their credentials.
 */
export function locateRepo(repoUrl: string, cwd: string): RepoLocation {
  const trimmed = repoUrl.trim();
  if (URL_LIKE.test(trimmed) || SCP_LIKE.test(trimmed)) {
    const split = splitRepoCredentials(trimmed);
    return { ...split, url: split.url.replace(/\/+$/, "") };
  }
  const local = path.resolve(cwd, trimmed);
  if (!existsSync(local)) {
    throw new UserError(
      "repo_not_found",
      `repository ${repoUrl} is neither a URL nor an existing local path (looked for ${local})`,
      EXIT.input,
      "set --repo / METAMCP_REPO_URL to a git URL (https://, ssh://, file://) or a local repository path",
    );
  }
  return { url: local };
}

/** The credential-free, normalised URL: what manifests record and what `local up` compares. */
export function normalizeRepoUrl(repoUrl: string, cwd: string): string {
  return locateRepo(repoUrl, cwd).url;
}

/** A short stable digest of a credential-free URL (cache directory names). */
export function urlDigest(url: string): string {
  return createHash("sha256").update(url).digest("hex").slice(0, 12);
}
