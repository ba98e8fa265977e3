import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, it } from "vitest";
import {
  type AcceptanceCase,
  discoverCases,
  expectCaseOutput,
  type Fixture,
  runCase,
} from "../support/acceptance.js";
import { createSyntheticUpstream, type SyntheticUpstream } from "../support/synthetic-upstream.js";

/**
 * Runs every case folder under test/acceptance (see test/support/acceptance.ts for the format).
 * `npx vitest run test/acceptance -t prepare/` runs some; `UPDATE_GOLDEN=1` records their output.txt.
 * Drives the built CLI: run `npm run build` first (npm test does).
 */
const cases = discoverCases();
const made: { upstream?: SyntheticUpstream } = {};

/** Made once, on first use, shared by every case that names them in test.toml `Fixtures`. */
function fixtures(c: AcceptanceCase): Record<string, Fixture> {
  const out: Record<string, Fixture> = {};
  if (c.config.fixtures.includes("upstream")) {
    made.upstream ??= createSyntheticUpstream();
    const u = made.upstream;
    // UPSTREAM: a MetaMCP-shaped repository (test/support/synthetic-upstream.ts), newest stable release v2.2.0.
    out.upstream = {
      env: { UPSTREAM: u.url, UPSTREAM_URL: u.fileUrl },
      repls: [{ old: u.dir, new: "[UPSTREAM]" }],
    };
  }
  return out;
}

afterAll(() => made.upstream?.cleanup());

describe.concurrent("acceptance", () => {
  for (const c of cases) {
    const title = c.skip ? `${c.name} (skipped: ${c.skip})` : c.name;
    it.skipIf(c.skip !== undefined)(title, { timeout: c.config.timeoutMs + 30_000 }, async () => {
      const work = mkdtempSync(path.join(os.tmpdir(), "mmdb-acc-"));
      try {
        expectCaseOutput(c, await runCase(c, work, fixtures(c)));
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });
  }
});
