import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

/** A blank path resolves to the project itself (or a folder named " "): refused before anything is made. */
describe("blank and whitespace-only paths", () => {
  const cases: { name: string; args: string[]; env?: Record<string, string>; named: string }[] = [
    { name: "prepare --build-dir ' '", args: ["prepare", "--build-dir", " "], named: "--build-dir" },
    { name: "prepare --build-dir '\\t'", args: ["prepare", "--build-dir", "\t"], named: "--build-dir" },
    { name: "prepare --cache-dir '  '", args: ["prepare", "--cache-dir", "  "], named: "--cache-dir" },
    { name: "build --app-dir ' '", args: ["build", "--app-dir", " "], named: "--app-dir" },
    { name: "BUILD_DIR=' '", args: ["prepare"], env: { BUILD_DIR: " " }, named: "BUILD_DIR" },
    {
      name: "LOCAL_STATE_DIR=' '",
      args: ["local", "status"],
      env: { LOCAL_STATE_DIR: " " },
      named: "LOCAL_STATE_DIR",
    },
  ];
  for (const c of cases) {
    it(`${c.name}: exit 2 naming it; nothing created`, async () => {
      const dir = tempDir();
      const r = await runCli(c.args, { cwd: dir, env: c.env, timeoutMs: 60_000 });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toContain(`${c.named}=`);
      expect(r.stderr).toMatch(/must be a path, not blank/);
      expect(readdirSync(dir)).toEqual([]);
    });
  }
});
