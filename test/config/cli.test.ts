import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("metamcp-databricks config", () => {
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
});
