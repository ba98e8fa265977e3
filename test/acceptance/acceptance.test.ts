import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  type AcceptanceCase,
  discoverCases,
  expectCaseOutput,
  type Fixture,
  runCase,
} from "../support/acceptance.js";
import { type DatabricksWorld, startDatabricksWorld } from "../support/databricks-world.js";
import { createSyntheticUpstream, type SyntheticUpstream } from "../support/synthetic-upstream.js";

/**
 * Runs every case folder under test/acceptance (see test/support/acceptance.ts for the format).
 * `npx vitest run test/acceptance -t prepare/` runs some; `UPDATE_GOLDEN=1` records their output.txt.
 * Drives the built CLI: run `npm run build` first (npm test does).
 */
const cases = discoverCases();
const made: { upstream?: SyntheticUpstream; databricks?: Promise<{ root: string; world: DatabricksWorld }> } =
  {};

/** Made once, on first use, shared by every case that names them in test.toml `Fixtures`. */
async function fixtures(c: AcceptanceCase): Promise<Record<string, Fixture>> {
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
  if (c.config.fixtures.includes("databricks")) {
    made.databricks ??= (async () => {
      const root = mkdtempSync(path.join(os.tmpdir(), "mmdb-acc-world-"));
      return { root, world: await startDatabricksWorld(root) };
    })();
    const { world } = await made.databricks;
    // The workspace emulator on 127.0.0.1 (test/support/databricks-emulator.ts), the CLI double first on
    // PATH as `databricks` (1.13.0), and a HOME whose ~/.databrickscfg has the profiles DEFAULT (OAuth M2M),
    // u2m (databricks-cli login), pat (a personal access token) and bob: the case's own HOME gives way.
    out.databricks = { env: world.env(), repls: [{ old: world.home, new: "[DATABRICKS_HOME]" }] };
  }
  return out;
}

afterAll(async () => {
  made.upstream?.cleanup();
  const d = await made.databricks;
  await d?.world.close();
  if (d) rmSync(d.root, { recursive: true, force: true });
});

describe.concurrent("acceptance", () => {
  it("finds the cases (a runner that finds none passes nothing)", () => {
    expect(cases.length).toBeGreaterThan(0);
  });
  for (const c of cases) {
    const title = c.skip ? `${c.name} (skipped: ${c.skip})` : c.name;
    it.skipIf(c.skip !== undefined)(title, { timeout: c.config.timeoutMs + 30_000 }, async () => {
      const work = mkdtempSync(path.join(os.tmpdir(), "mmdb-acc-"));
      try {
        expectCaseOutput(c, await runCase(c, work, await fixtures(c)));
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    });
  }
});
