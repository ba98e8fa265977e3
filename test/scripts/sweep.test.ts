import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatResult, formatTotal, type SweepResult, sweep } from "../../scripts/sweep.js";
import { silentLogger } from "../../src/log/logger.js";
import { createSyntheticUpstream, type SyntheticUpstream } from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/** `npm run sweep` (not CI's: it is run by hand on the real upstream) on synthetic repositories. */
describe("sweep", () => {
  let upstream: SyntheticUpstream;
  let drifted: SyntheticUpstream;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
    drifted = createSyntheticUpstream({ dbIndexForm: (v) => (v === "v2.1.0" ? "unknown" : undefined) });
  });
  afterAll(() => {
    upstream?.cleanup();
    drifted?.cleanup();
  });

  it("prepares and migrates every stable tag (on and off the default branch) and main, nothing in public", async () => {
    const lines: string[] = [];
    const results = await sweep({
      repoUrl: upstream.url,
      workDir: tempDir(),
      log: silentLogger,
      onResult: (r) => lines.push(formatResult(r)),
    });
    expect(results.map((r) => [r.ref, r.kind, r.status])).toEqual([
      ["v2.0.0", "tag on default branch", "ok"],
      ["v2.1.0", "tag on default branch", "ok"],
      ["v2.2.0", "tag on default branch", "ok"],
      ["v2.4.0", "tag off default branch", "ok"],
      ["main", "default branch", "ok"],
    ]);
    const byRef = Object.fromEntries(results.map((r) => [r.ref, r])) as Record<string, SweepResult>;
    expect(byRef["v2.0.0"]).toMatchObject({ form: "drizzle(DATABASE_URL)", migrations: 1, publicObjects: 0 });
    expect(byRef.main).toMatchObject({
      form: "new Pool",
      migrations: 4,
      publicObjects: 0,
      tables: 7,
      enums: 2,
    });
    // 7 tables + drizzle's journal; enums as types.
    expect(byRef.main?.schemaObjects).toMatchObject({ tables: 8, types: 2 });
    expect(lines).toHaveLength(5);
    expect(lines[4]).toMatch(/^main +\w{12} default branch +OK +new Pool .* public 0 /);
    expect(formatTotal(results)).toBe(
      "total: 5 of 5 MetaMCP 2 refs OK, 0 failing; 0 skipped (not MetaMCP 2)",
    );
  });

  it("reports a ref that stops, with the stage and the drift message, and goes on", async () => {
    const results = await sweep({
      repoUrl: drifted.url,
      refs: ["v2.1.0", "v2.2.0", "nope"],
      workDir: tempDir(),
      log: silentLogger,
    });
    expect(results.map((r) => [r.ref, r.status, r.stage])).toEqual([
      ["v2.1.0", "fail", "prepare"],
      ["v2.2.0", "ok", undefined],
      ["nope", "fail", "prepare"],
    ]);
    expect(results[0]?.reason).toMatch(
      /upstream drift in apps\/backend\/src\/db\/index\.ts .*\[upstream_drift, exit 3\]$/,
    );
    expect(results[2]?.reason).toMatch(/ref_not_found, exit 2/);
    expect(formatTotal(results)).toBe(
      "total: 1 of 3 MetaMCP 2 refs OK, 2 failing; 0 skipped (not MetaMCP 2)",
    );
  });
});
