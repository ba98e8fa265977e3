import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

/**
 * Commander's own usage errors under `--json`: a pipeline reads stdout as JSON, so they go out as
 * `{"error":{…}}` like every other error, exit 2, with commander's text still on stderr for a person.
 */
describe("usage errors under --json", () => {
  const cases: { name: string; args: string[]; message: RegExp }[] = [
    {
      name: "an unknown option",
      args: ["--json", "local", "up", "--bogus"],
      message: /unknown option '--bogus'/,
    },
    {
      name: "an unknown root option",
      args: ["--json", "--bogus", "config"],
      message: /unknown option '--bogus'/,
    },
    { name: "an unknown command", args: ["--json", "nosuch"], message: /unknown command 'nosuch'/ },
    {
      name: "an unknown subcommand",
      args: ["--json", "local", "nosuch"],
      message: /too many arguments|unknown command/,
    },
    {
      name: "a missing option value",
      args: ["--json", "local", "up", "--port"],
      message: /option '--port <n>' argument missing/,
    },
    {
      name: "a value outside the choices",
      args: ["--json", "local", "up", "--forward-authorization", "maybe"],
      message: /Allowed choices are on, off/,
    },
    {
      name: "a missing root option value",
      args: ["config", "--json", "--target"],
      message: /argument missing/,
    },
    { name: "too many arguments", args: ["--json", "local", "down", "extra"], message: /too many arguments/ },
  ];
  for (const c of cases) {
    it(`${c.name}: {"error":{…}} on stdout, exit 2`, async () => {
      const r = await runCli(c.args, { cwd: tempDir(), timeoutMs: 60_000 });
      expect(r.exitCode, r.stderr).toBe(2);
      const parsed = JSON.parse(r.stdout) as { error: { code: string; message: string } };
      expect(parsed.error.code).toBe("usage");
      expect(parsed.error.message).toMatch(c.message);
      expect(parsed.error.message).not.toMatch(/^error: /);
      expect(r.stderr).toMatch(c.message);
    });
  }

  it("without --json a usage error prints nothing on stdout", async () => {
    const r = await runCli(["local", "up", "--bogus"], { cwd: tempDir(), timeoutMs: 60_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(/unknown option '--bogus'/);
  });
});
