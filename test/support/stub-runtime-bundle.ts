import { writeFileSync } from "node:fs";
import path from "node:path";

/**
 * Empty stand-ins for the runtime bundle `build --runtime-bundle` copies into the app tree (start.mjs and the
 * files beside it): for tests of `build` that never start the app. Returns start.mjs's path.
 */
export function writeStubRuntimeBundle(dir: string): string {
  for (const file of ["start.mjs", "secrets-preload.mjs", "telemetry.mjs"])
    writeFileSync(path.join(dir, file), "export {};\n");
  return path.join(dir, "start.mjs");
}
