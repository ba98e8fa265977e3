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

  it("never prints a secret: a token in METAMCP_REPO_URL is masked in the text and the JSON output", async () => {
    const token = "ghp_configTestToken0123456789";
    const env = { METAMCP_REPO_URL: `https://someone:${token}@github.com/acme/metamcp.git` };
    const [text, json] = await Promise.all([
      runCli(["config"], { cwd: tempDir(), env }),
      runCli(["config", "--json"], { cwd: tempDir(), env }),
    ]);
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/^METAMCP_REPO_URL\s+https:\/\/github\.com\/acme\/metamcp\.git\s+\(env\)$/m);
    expect(JSON.parse(json.stdout).values.METAMCP_REPO_URL).toEqual({
      value: "https://github.com/acme/metamcp.git",
      source: "env",
    });
    for (const r of [text, json]) expect(`${r.stdout}${r.stderr}`).not.toContain(token);
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
