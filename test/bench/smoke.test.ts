import { readdirSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../support/cli.js";

/**
 * `npm run bench` as a user runs it, once with the fewest iterations (BENCH_SMOKE=1): every bench must run
 * green (a bench that broke unnoticed, like `start` on a changed default database, fails here). Figures are
 * not asserted: a shared machine makes them noise.
 */
describe("npm run bench (smoke)", () => {
  it("every bench runs green", async () => {
    const benches = readdirSync(path.join(PROJECT_ROOT, "bench"))
      .filter((f) => f.endsWith(".bench.ts"))
      .map((f) => f.replace(/\.bench\.ts$/, ""));
    expect(benches.length, "bench/*.bench.ts").toBeGreaterThan(0);
    const r = await execa("node", ["--import", "tsx", "bench/run.ts"], {
      cwd: PROJECT_ROOT,
      env: { BENCH_SMOKE: "1", NO_COLOR: "1" },
      reject: false,
      timeout: 600_000,
    });
    expect(r.stdout, r.stderr).not.toMatch(/FAILED/);
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    for (const name of benches) expect(r.stdout).toMatch(new RegExp(`^${name}\\s+bench_ms`, "m"));
  }, 660_000);
});
