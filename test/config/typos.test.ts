import { writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

/** A misspelt variable was accepted in silence and the default used: one warning line each, naming the fix. */
describe("unknown variables of our prefixes", () => {
  it("`.env` with METAMCP_REFF, METAMCP_SCHEMA, LOCAL_PROT: one warning each with the nearest known name", async () => {
    const dir = tempDir();
    writeFileSync(
      path.join(dir, ".env"),
      [
        "METAMCP_REFF=v2.4.22",
        "METAMCP_SCHEMA=other",
        "LOCAL_PROT=8100",
        "UNRELATED_THING=1",
        "METAMCP_REF=",
      ].join("\n"),
    );
    const r = await runCli(["config"], { cwd: dir });
    expect(r.exitCode, r.stderr).toBe(0);
    const warnings = r.stderr.split("\n").filter((l) => /is an unknown variable/.test(l));
    expect(warnings).toHaveLength(3);
    expect(r.stderr).toMatch(
      /METAMCP_REFF \(in .*\.env\) is an unknown variable, ignored: did you mean METAMCP_REF\?/,
    );
    expect(r.stderr).toMatch(/METAMCP_SCHEMA .*did you mean METAMCP_DB_SCHEMA\?/);
    expect(r.stderr).toMatch(/LOCAL_PROT .*did you mean LOCAL_PORT\?/);
    expect(r.stderr).not.toContain("UNRELATED_THING");
  });

  it("the same typo in the environment is named too; the runtime's and local's own variables are not", async () => {
    const dir = tempDir();
    const r = await runCli(["config"], {
      cwd: dir,
      env: {
        METAMCP_REFF: "v1",
        METAMCP_BACKEND_PORT: "12109",
        METAMCP_LISTEN_HOST: "127.0.0.1",
        LAKEBASE_ENDPOINT: "x",
      },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/METAMCP_REFF \(in the environment\) .*did you mean METAMCP_REF\?/);
    expect(r.stderr).not.toMatch(/METAMCP_BACKEND_PORT|METAMCP_LISTEN_HOST|LAKEBASE_ENDPOINT/);
  });

  it("under --json the warning is a JSON log line on stderr and stdout stays the result", async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, ".env"), "LOCAL_PROT=8100\n");
    const r = await runCli(["--json", "config"], { cwd: dir });
    expect(r.exitCode).toBe(0);
    expect(() => JSON.parse(r.stdout)).not.toThrow();
    expect(r.stderr).toMatch(/LOCAL_PROT .*LOCAL_PORT/);
  });
});
