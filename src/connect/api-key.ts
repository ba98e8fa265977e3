import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import envPaths from "env-paths";
import writeFileAtomic from "write-file-atomic";
import { EXIT, UserError } from "../errors.js";
import { registerSecret } from "../log/secrets.js";

/** The environment variable the bridge reads MetaMCP's API key from. */
export const API_KEY_ENV = "METAMCP_API_KEY";

export type ApiKeySource = "flag" | "env" | "file";

export interface ApiKey {
  key: string;
  source: ApiKeySource;
  /** The file it came from (source `file`). */
  file?: string;
}

/**
 * Where `connect` keeps a MetaMCP API key: one file per app (a key belongs to one MetaMCP), in the
 * user's config folder, never in the project (it must not be committed).
 */
export function defaultKeyFile(
  appKey: string,
  env: Record<string, string | undefined> = process.env,
): string {
  const dir =
    env.METAMCP_CONNECT_DIR ?? path.join(envPaths("metamcp-databricks", { suffix: "" }).config, "connect");
  return path.join(dir, `${appKey.replace(/[^A-Za-z0-9_.-]/g, "_")}.key`);
}

function checkKey(key: string, from: string): string {
  const trimmed = key.trim();
  if (!trimmed) throw new UserError("api_key_empty", `the MetaMCP API key from ${from} is empty`, EXIT.input);
  if (/\s/.test(trimmed)) {
    throw new UserError(
      "api_key_invalid",
      `the MetaMCP API key from ${from} contains whitespace: copy it again from MetaMCP's "API Keys" page`,
      EXIT.input,
    );
  }
  registerSecret(trimmed);
  return trimmed;
}

/**
 * The key, by precedence: `--api-key`, then `--api-key-file`, then the environment, then the default
 * key file. Undefined when none holds one. A key file readable by others is refused: it is a credential.
 */
export function resolveApiKey(input: {
  flag?: string;
  flagFile?: string;
  env?: Record<string, string | undefined>;
  defaultFile: string;
}): ApiKey | undefined {
  if (input.flag !== undefined) return { key: checkKey(input.flag, "--api-key"), source: "flag" };
  if (input.flagFile !== undefined) {
    if (!existsSync(input.flagFile)) {
      throw new UserError(
        "api_key_file_missing",
        `the key file ${input.flagFile} does not exist`,
        EXIT.input,
      );
    }
    return readKeyFile(input.flagFile);
  }
  const fromEnv = (input.env ?? process.env)[API_KEY_ENV];
  if (fromEnv) return { key: checkKey(fromEnv, API_KEY_ENV), source: "env" };
  if (!existsSync(input.defaultFile)) return undefined;
  return readKeyFile(input.defaultFile);
}

function readKeyFile(file: string): ApiKey {
  const mode = statSync(file).mode & 0o777;
  if (process.platform !== "win32" && (mode & 0o077) !== 0) {
    throw new UserError(
      "api_key_file_open",
      `the key file ${file} is readable by others (mode ${mode.toString(8)})`,
      EXIT.input,
      `run \`chmod 600 ${file}\``,
    );
  }
  return { key: checkKey(readFileSync(file, "utf8"), file), source: "file", file };
}

/** Writes the key with mode 0600 in a 0700 folder, atomically, replacing an older key. */
export function writeKeyFile(file: string, key: string): void {
  const value = checkKey(key, "the input");
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // write-file-atomic chmods its temp file to `mode` before the rename (an open's mode is masked by the umask).
  writeFileAtomic.sync(file, `${value}\n`, { mode: 0o600 });
}

export function missingKeyError(file: string, keyCommand: string): UserError {
  return new UserError(
    "api_key_missing",
    `no MetaMCP API key: none given with --api-key-file, ${API_KEY_ENV} is not set and ${file} does not exist`,
    EXIT.input,
    `create a key in MetaMCP ("API Keys"), then save it once with \`${keyCommand}\` (it reads the key from stdin)`,
  );
}
