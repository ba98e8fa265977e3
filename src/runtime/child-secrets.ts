import { closeSync, readSync } from "node:fs";

/**
 * MetaMCP's own processes get their secrets without them ever being in their initial environment
 * (docs/identity.md "What a process the app runs can read"). Every process of the app runs as the same user,
 * and so does every STDIO MCP server MetaMCP starts: any of them can read `/proc/<pid>/environ` of the
 * others, and that file is the environment a process STARTED with (deleting from `process.env` later does not
 * change it). So the runtime starts the backend and the frontend with `node --import <secrets-preload.mjs>`
 * and hands the secrets over on an inherited pipe (fd 3): the preload reads it synchronously, before any of
 * MetaMCP's code runs, puts the values into `process.env` (where better-auth and our identity module read
 * them, as before), and closes the pipe.
 *
 * Why a pipe and not a 0600 file deleted after reading: a file is on disk (the temp dir, readable by the same
 * user) from the moment it is written until the child has started and read it, and a crash in between leaves
 * it there; the pipe's bytes exist only in the kernel, reachable only through the two ends we hold, gone once
 * read. (A same-user process could still open /proc/<child>/fd/3 in the milliseconds before the preload reads
 * it: it would then take the bytes away and the child would fail to start, loudly.)
 */

/** The child's fd the secrets arrive on (stdio index 3: the first after stdin, stdout, stderr). */
export const SECRETS_FD = 3;
/** Tells the preload which fd to read; not a secret itself (and removed by the preload). */
export const SECRETS_FD_ENV = "METAMCP_SECRETS_FD";
/** The preload beside runtime/start.mjs in the app tree (tsup entry `runtime/secrets-preload`). */
export const SECRETS_PRELOAD_FILE = "secrets-preload.mjs";

/**
 * The variables of MetaMCP's processes that are handed over, never put in their environment: better-auth's
 * signing key, our identity secret, where the live Lakebase credential is, the tools gateway's secret
 * (databricks-tools/settings.ts GATEWAY_SECRET_ENV), and the bootstrap variables that
 * carry passwords or keys (upstream-settings.ts SECRET_BOOTSTRAP).
 */
export const CHILD_SECRET_NAMES: ReadonlySet<string> = new Set([
  "BETTER_AUTH_SECRET",
  "METAMCP_IDENTITY_SECRET",
  "METAMCP_PG_PASSWORD_FILE",
  "METAMCP_TOOLS_GATEWAY_SECRET",
  "BOOTSTRAP_USER_PASSWORD",
  "BOOTSTRAP_USERS",
  "BOOTSTRAP_API_KEYS",
]);

/** A child's variables, split: what may be in its environment, and what is handed over on the pipe. */
export function splitChildSecrets(all: Record<string, string>): {
  env: Record<string, string>;
  secrets: Record<string, string>;
} {
  const env: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  for (const [name, value] of Object.entries(all))
    (CHILD_SECRET_NAMES.has(name) ? secrets : env)[name] = value;
  return { env, secrets };
}

/** What the runtime writes on the pipe (then closes its end). */
export function encodeChildSecrets(secrets: Record<string, string>): string {
  return JSON.stringify(secrets);
}

/** Reads the pipe to its end, synchronously (the preload must finish before MetaMCP's code runs), and closes it. */
export function readHandedSecrets(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(64 * 1024);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    closeSync(fd);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Puts the handed-over values into `env` (the child's process.env); refuses anything but a map of strings. */
export function applyHandedSecrets(raw: string, env: Record<string, string | undefined>): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error(`the runtime's hand-over is not JSON (${raw.length} bytes: did the runtime exit?)`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed))
    throw new Error("the runtime's hand-over is not a map of variables");
  const names: string[] = [];
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== "string") throw new Error(`the runtime's hand-over has a non-string ${name}`);
    env[name] = value;
    names.push(name);
  }
  return names;
}

/**
 * The preload's work (src/runtime/secrets-preload.ts). No fd named: nothing to do (a node process MetaMCP
 * starts with the backend's execArgv runs the preload too, and must not wait on a pipe it does not have).
 */
export function receiveChildSecrets(env: Record<string, string | undefined>): string[] {
  const raw = env[SECRETS_FD_ENV];
  if (raw === undefined) return [];
  delete env[SECRETS_FD_ENV];
  const fd = Number(raw);
  if (!Number.isInteger(fd) || fd < 0) throw new Error(`${SECRETS_FD_ENV}=${raw} is not a file descriptor`);
  return applyHandedSecrets(readHandedSecrets(fd), env);
}
