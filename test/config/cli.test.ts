import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("metamcp-databricks config", () => {
  it("prints every resolved value and its source as JSON", async () => {
    const cwd = tempDir();
    const r = await runCli(["config", "--json", "--target", "prod"], { cwd });
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.target).toBe("prod");
    expect(out.values.APP_NAME).toEqual({ value: "metamcp", source: "derived" });
    expect(out.values.TARGET).toEqual({ value: "prod", source: "flag" });
  });

  it("exits 2 with the variable named on a bad value", async () => {
    const r = await runCli(["config"], { cwd: tempDir(), env: { METAMCP_DB_SCHEMA: "public" } });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("METAMCP_DB_SCHEMA");
    expect(r.stderr).not.toContain("    at "); // no stack trace for user errors
  });

  it("exits 2 on an unknown option", async () => {
    const r = await runCli(["config", "--no-such-flag"], { cwd: tempDir() });
    expect(r.exitCode).toBe(2);
  });
});
