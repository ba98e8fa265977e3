import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** This package's root (where package.json, dist/ and overlay/ live), from the running file. */
export function toolRoot(from: string = fileURLToPath(import.meta.url)): string {
  for (let dir = path.dirname(from); ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, "package.json");
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "metamcp-databricks")
          return dir;
      } catch {
        // not ours; keep walking
      }
    }
    if (path.dirname(dir) === dir)
      throw new Error(`cannot find the metamcp-databricks package root above ${from}`);
  }
}

/** Files `prepare` overlays on the upstream tree (build copies them again into the app tree). */
export const OVERLAY_PATH = "overlay";
