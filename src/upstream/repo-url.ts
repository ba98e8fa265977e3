import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";

/** Username and password (or a token as either) found in an http(s) repository URL, decoded. */
export interface RepoCredentials {
  username: string;
  password: string;
}

/**
 * A repository as `prepare` uses it: `url` carries no credentials and is the only form that is stored
 * (mirror config, manifests), printed or hashed; `credentials` reach git through a credential helper
 * reading the child's environment, never through a file or a command line.
 */
export interface RepoLocation {
  url: string;
  credentials?: RepoCredentials;
}

const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;
const SCP_LIKE = /^[^/\\]+@[^/\\:]+:/;
const HTTP_LIKE = /^(https?|ftps?):\/\//i;

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/**
 * Splits credentials off an http(s) URL: `https://user:TOKEN@host/fork.git` → `https://host/fork.git` plus
 * `{ username: "user", password: "TOKEN" }`. A lone userinfo (`https://TOKEN@host/…`, how GitHub takes a
 * token) is a secret too. ssh's `git@host` user is not a secret and stays (ssh needs it), but a password
 * in an ssh:// URL is removed. Registers every secret with the masking logger before returning.
 */
export function splitRepoCredentials(raw: string): RepoLocation {
  const trimmed = raw.trim();
  if (!URL_LIKE.test(trimmed)) return { url: trimmed };
  let parsed: URL;
  try {
    parsed = new URL(trimmed);
  } catch {
    // Not parseable as a WHATWG URL: mask whatever sits between "//" and "@" anyway.
    const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/@]+)@(.*)$/i.exec(trimmed);
    if (!m) return { url: trimmed };
    const [user = "", pass = ""] = m[2]!.split(/:(.*)/s);
    registerSecret(pass || user);
    registerSecret(decode(pass || user));
    return { url: `${m[1]}${m[3]}`, credentials: { username: decode(user), password: decode(pass) } };
  }
  if (!parsed.username && !parsed.password) return { url: trimmed };
  const username = decode(parsed.username);
  const password = decode(parsed.password);
  const http = HTTP_LIKE.test(trimmed);
  // The raw (still percent-encoded) forms are what a user would paste: mask them and the decoded ones.
  if (parsed.password) {
    registerSecret(parsed.password);
    registerSecret(password);
  } else if (http) {
    registerSecret(parsed.username);
    registerSecret(username);
  }
  if (!http) {
    // ssh://git:pw@host: keep the user for ssh, drop the password (git never sends it over ssh anyway).
    parsed.password = "";
    return { url: parsed.toString() };
  }
  parsed.username = "";
  parsed.password = "";
  return { url: parsed.toString(), credentials: { username, password } };
}

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
      2,
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
