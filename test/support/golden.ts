import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { PROJECT_ROOT } from "./cli.js";

/**
 * Compares output with a recorded expectation in test/golden/<name>.txt, as the Databricks CLI's own
 * acceptance tests do. `UPDATE_GOLDEN=1 npm test` rewrites the recordings; review the diff before committing.
 */
export function expectGolden(name: string, actual: string): void {
  const file = path.join(PROJECT_ROOT, "test/golden", `${name}.txt`);
  if (process.env.UPDATE_GOLDEN === "1" || !existsSync(file)) {
    if (process.env.CI && !existsSync(file))
      throw new Error(`missing golden file ${file}: run UPDATE_GOLDEN=1 npm test`);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  expect(actual).toBe(readFileSync(file, "utf8"));
}
