import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { PROJECT_ROOT } from "./cli.js";

/** Where `expectGolden` keeps its recordings unless told otherwise. */
export const GOLDEN_DIR = path.join(PROJECT_ROOT, "test/golden");

/** The one switch that (re)writes recordings: `UPDATE_GOLDEN=1` (docs/design.md). Nothing else writes them. */
export function updatingGoldens(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.UPDATE_GOLDEN === "1";
}

/**
 * Compares `actual` with the recording in `file`. With `UPDATE_GOLDEN=1` it writes the recording instead.
 * A missing recording fails: a test that passes by writing what it was meant to check checks nothing
 * (and a typo in a name would pass for ever).
 */
export function expectRecorded(
  file: string,
  actual: string,
  options: { update?: boolean; what?: string } = {},
): void {
  const update = options.update ?? updatingGoldens();
  const rel = path.relative(PROJECT_ROOT, file);
  if (update) {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, actual);
    return;
  }
  if (!existsSync(file)) {
    throw new Error(
      `missing recording ${rel}${options.what ? ` (${options.what})` : ""}: create it with ` +
        "`UPDATE_GOLDEN=1 npx vitest run <this test file>`, then review and commit it",
    );
  }
  expect(
    actual,
    `${rel} differs from the output: if the change is intended, re-record with UPDATE_GOLDEN=1 and review the diff`,
  ).toBe(readFileSync(file, "utf8"));
}

/**
 * Compares output with a recorded expectation in test/golden/<name>.txt, as the Databricks CLI's own
 * acceptance tests do. `UPDATE_GOLDEN=1 npm test` rewrites the recordings; review the diff before committing.
 * `dir` and `update` exist for expectGolden's own test.
 */
export function expectGolden(
  name: string,
  actual: string,
  options: { dir?: string; update?: boolean } = {},
): void {
  expectRecorded(path.join(options.dir ?? GOLDEN_DIR, `${name}.txt`), actual, { update: options.update });
}
