import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runCli } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

/** Files the user put in the way: a clear message and exit 2, never a stack; nothing of theirs changed. */
describe("config and render: files in the way", () => {
  it("`.env` is a folder: exit 2 saying what to do", async () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, ".env"));
    const r = await runCli(["config"], { cwd: dir });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toContain(`${path.join(dir, ".env")} is not a file`);
    expect(r.stderr).toMatch(/move it away/);
    expect(r.stderr).not.toMatch(/internal error|EISDIR/);
  });

  it("`render --out` onto an existing file: exit 2, the file untouched", async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "notes.txt"), "mine");
    const r = await runCli(["render", "--out", "notes.txt"], { cwd: dir, env: { DEV_USER: "someone" } });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toContain(`--out ${path.join(dir, "notes.txt")} is a file`);
    expect(r.stderr).toMatch(/give a folder/);
    expect(r.stderr).not.toMatch(/internal error|EEXIST/);
    expect(readFileSync(path.join(dir, "notes.txt"), "utf8")).toBe("mine");
  });

  it("`render --out` below a file (ENOTDIR): exit 2", async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, "f"), "mine");
    const r = await runCli(["render", "--out", "f/sub"], { cwd: dir, env: { DEV_USER: "someone" } });
    expect(r.exitCode, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/cannot write the rendered files into .*f\/sub \((ENOTDIR|EEXIST)/);
  });
});
