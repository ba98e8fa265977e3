import { readFileSync } from "node:fs";
import path from "node:path";
import { DriftError } from "../errors.js";

/** The package manager upstream pins in its root package.json (`packageManager: "pnpm@9.0.0"`). */
export interface PinnedPackageManager {
  name: "pnpm";
  /** Exact version, e.g. `9.0.0` (a corepack `+sha...` suffix is dropped). */
  version: string;
}

const EXACT_VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;

/** Reads and validates `packageManager`; anything but an exact pnpm version is upstream drift (exit 3). */
export function readPinnedPackageManager(treeDir: string): PinnedPackageManager {
  const file = path.join(treeDir, "package.json");
  let pkg: { packageManager?: unknown };
  try {
    pkg = JSON.parse(readFileSync(file, "utf8")) as { packageManager?: unknown };
  } catch (err) {
    throw new DriftError(
      "package_json_unreadable",
      `cannot read ${file}: ${(err as Error).message}`,
      "run `metamcp-databricks prepare` first",
    );
  }
  const field = pkg.packageManager;
  if (typeof field !== "string") {
    throw new DriftError(
      "package_manager_missing",
      `${file} has no "packageManager" field: cannot tell which pnpm upstream builds with`,
    );
  }
  const [spec] = field.split("+");
  const at = spec!.lastIndexOf("@");
  const name = spec!.slice(0, at);
  const version = spec!.slice(at + 1);
  if (name !== "pnpm" || !EXACT_VERSION.test(version)) {
    throw new DriftError(
      "package_manager_unsupported",
      `${file}: packageManager is ${JSON.stringify(field)}; build supports an exact pnpm version only (e.g. "pnpm@9.0.0")`,
    );
  }
  return { name: "pnpm", version };
}

/**
 * How pnpm is run: from the npm registry through npx, at exactly the pinned version. npx caches the
 * package, so only the first run downloads it; nothing comes from anywhere but the configured registry.
 */
export function pnpmCommand(pm: PinnedPackageManager, args: string[]): { command: string; args: string[] } {
  return { command: "npx", args: ["--yes", `pnpm@${pm.version}`, ...args] };
}
