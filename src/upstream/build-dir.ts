import { randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { processRuns } from "../process/alive.js";
import { MANIFEST_PATH, readManifest } from "./manifest.js";

/**
 * The build dir is ours to replace only when it is missing, empty, or a tree `prepare` made (it holds our
 * manifest). Anything else is the user's: `--build-dir .`, a source folder, or `build/` of the earlier
 * layout with `build/app` and `databricks.yml` in it. Refused with exit 2 before any work.
 */
export function assertBuildDirReplaceable(buildDir: string): void {
  const st = lstatSync(buildDir, { throwIfNoEntry: false });
  if (!st) return;
  const refuse = (why: string, hint: string) =>
    new UserError("build_dir_not_ours", `refusing to replace ${buildDir}: ${why}`, EXIT.input, hint);
  const pick = "pass --build-dir (or set BUILD_DIR) to a new or empty directory, e.g. build/metamcp";
  if (st.isSymbolicLink()) {
    throw refuse("it is a symbolic link, and prepare replaces the directory itself", pick);
  }
  if (!st.isDirectory()) throw refuse("it is a file, not a directory", pick);
  let entries: string[];
  try {
    entries = readdirSync(buildDir);
  } catch (err) {
    throw refuse(`it cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, pick);
  }
  if (entries.length === 0) return;
  const manifest = readManifest(buildDir);
  if (manifest && typeof manifest.commit === "string") return;
  const earlierLayout = entries.filter((e) => e === "app" || e === "databricks.yml");
  if (earlierLayout.length) {
    throw refuse(
      `it holds ${earlierLayout.join(" and ")} (the output of an earlier layout of this tool, or your files), not a tree prepare made`,
      `move them away or delete them yourself if they are no longer needed; or ${pick}`,
    );
  }
  const shown =
    entries.slice(0, 5).join(", ") + (entries.length > 5 ? `, … (${entries.length} entries)` : "");
  throw refuse(
    `it is not empty (${shown}) and holds no ${MANIFEST_PATH}, so it is not a tree prepare made`,
    `${pick}; prepare only ever replaces an empty directory or one it prepared`,
  );
}

const hostTag = () => os.hostname().replace(/[^A-Za-z0-9.-]/g, "_");

/** `.<name>.<kind>-<pid>-<host>-<8 hex>` beside the build dir: whose it is, so a dead run's can be found. */
export function siblingName(buildDir: string, kind: "prepare" | "old"): string {
  return path.join(
    path.dirname(buildDir),
    `.${path.basename(buildDir)}.${kind}-${process.pid}-${hostTag()}-${randomBytes(4).toString("hex")}`,
  );
}

/** Directories from versions before names carried their owner: mkdtemp's six characters. */
const LEGACY_AGE_MS = 15 * 60_000;

/**
 * Removes what killed runs left beside the build dir: their work trees (`.<name>.prepare-*`), their private
 * index files (and git's lock on one), and previous trees renamed aside (`.<name>.old-*`). Only names of ours, and only when their
 * process no longer runs on this machine: a concurrent prepare's work tree is kept.
 */
export function removeDeadSiblings(buildDir: string, log: Logger): void {
  const dir = path.dirname(buildDir);
  const base = path.basename(buildDir).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const ours = new RegExp(`^\\.${base}\\.(prepare|old)-(\\d+)-(.+)-[0-9a-f]{8}(\\.index(\\.lock)?)?$`);
  const legacy = new RegExp(`^\\.${base}\\.(prepare-[A-Za-z0-9]{6}|old-[0-9a-f]{8})(\\.index(\\.lock)?)?$`);
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    const full = path.join(dir, name);
    const m = ours.exec(name);
    let dead = false;
    if (m) {
      // Names carry the host name made file-safe: compare it so, then ask whether the pid still runs.
      dead = m[3] === hostTag() && !processRuns(Number(m[2]), { zombieCounts: true });
    } else if (legacy.test(name)) {
      const age = Date.now() - (statSync(full, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      dead = age > LEGACY_AGE_MS;
    }
    if (!dead) continue;
    try {
      rmSync(full, { recursive: true, force: true });
      log.info(`removed ${full}, left by an interrupted prepare`);
    } catch (err) {
      log.warn(`could not remove ${full}, left by an interrupted prepare: ${(err as Error).message}`);
    }
  }
}

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}

/** The work dir beside the build dir; a parent we cannot write is a user error that changed nothing. */
export function makeWorkDir(buildDir: string, previous: boolean): string {
  const parent = path.dirname(buildDir);
  const work = siblingName(buildDir, "prepare");
  try {
    mkdirSync(parent, { recursive: true });
    mkdirSync(work);
    return work;
  } catch (err) {
    throw new UserError(
      "build_dir_unwritable",
      `cannot write beside ${buildDir}: ${parent} is not writable (${errCode(err)}); ` +
        (previous ? `the previous tree at ${buildDir} remains as it was` : "nothing was written"),
      EXIT.input,
      `make ${parent} writable, or pass --build-dir (BUILD_DIR) in a folder you can write`,
    );
  }
}

/**
 * Replaces `dest` with `src` by two renames on the same filesystem, then deletes the previous tree. Every
 * failure says truly where things are: the previous tree still in place, or the new tree in place and the
 * previous one left at a named path.
 */
export function swapIntoPlace(src: string, dest: string): void {
  if (!lstatSync(dest, { throwIfNoEntry: false })) {
    try {
      renameSync(src, dest);
    } catch (err) {
      throw new UserError(
        "build_dir_unwritable",
        `cannot move the prepared tree into ${dest} (${errCode(err)}); nothing was written there`,
        EXIT.input,
        `make ${path.dirname(dest)} writable, or pass --build-dir (BUILD_DIR) in a folder you can write`,
      );
    }
    return;
  }
  const old = siblingName(dest, "old");
  try {
    renameSync(dest, old);
  } catch (err) {
    throw new UserError(
      "build_dir_locked",
      `cannot move the previous tree at ${dest} aside (${errCode(err)}): it remains as it was, and the new tree was not installed`,
      EXIT.input,
      `check the permissions of ${dest} and ${path.dirname(dest)} (and that nothing has it open or mounted), then run again`,
    );
  }
  try {
    renameSync(src, dest);
  } catch (err) {
    renameSync(old, dest);
    throw new UserError(
      "build_dir_unwritable",
      `cannot move the prepared tree into ${dest} (${errCode(err)}); the previous tree remains as it was`,
      EXIT.input,
      `check the permissions of ${path.dirname(dest)}, then run again`,
    );
  }
  try {
    rmSync(old, { recursive: true, force: true });
  } catch (err) {
    throw new UserError(
      "old_tree_undeletable",
      `the new tree is in place at ${dest}, but the previous tree, moved to ${old}, could not be deleted (${errCode(err)}${(err as NodeJS.ErrnoException).path ? ` on ${(err as NodeJS.ErrnoException).path}` : ""}); part of it remains there`,
      EXIT.input,
      `delete ${old} yourself (it may need other permissions); the next prepare retries when its process is gone`,
    );
  }
}
