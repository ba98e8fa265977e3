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

export const URL_LIKE = /^[a-z][a-z0-9+.-]*:\/\//i;
export const SCP_LIKE = /^[^/\\]+@[^/\\:]+:/;
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
