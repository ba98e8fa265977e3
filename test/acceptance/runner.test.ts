import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { discoverCases, expectCaseOutput, runCase } from "../support/acceptance.js";
import { tempDir } from "../support/tmp.js";

/** The acceptance runner itself, on a case tree made here (bash only, one CLI start). */
describe("acceptance runner", () => {
  function caseTree(): string {
    const root = tempDir();
    const dir = path.join(root, "group/one");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(root, "group/test.toml"), 'Env.GREETING = "hello"\n');
    writeFileSync(
      path.join(dir, "test.toml"),
      "RequiresShared = false\n[[Repls]]\nOld = 'id-[0-9]+'\nNew = '[ID]'\n",
    );
    writeFileSync(path.join(dir, "input.txt"), "copied beside the script\n");
    writeFileSync(
      path.join(dir, "script"),
      [
        'title "helpers"',
        'echo "$GREETING from $PWD"',
        "trace cat input.txt",
        "errcode bash -c 'echo to stderr >&2; exit 4'",
        "musterr false",
        'echo "id-12345 2026-11-30T10:37:14.749Z 0123456789abcdef0123456789abcdef01234567 took 2.0s on 127.0.0.1:4567 and 127.0.0.1:12009"',
        "trace $CLI --version",
        'env | grep -q SECRET_FROM_HOST || echo "host env not passed"',
        "exit 3",
      ].join("\n"),
    );
    return root;
  }

  it("finds cases by their script, merges test.toml from the root down, records output with placeholders", async () => {
    const root = caseTree();
    const cases = discoverCases(root);
    expect(cases.map((c) => c.name)).toEqual(["group/one"]);
    const c = cases[0]!;
    expect(c.config.env).toEqual({ GREETING: "hello" });
    process.env.SECRET_FROM_HOST = "x";
    let out: string;
    try {
      out = await runCase(c, tempDir(), {});
    } finally {
      delete process.env.SECRET_FROM_HOST;
    }
    expect(out).toBe(
      [
        "",
        "=== helpers",
        "hello from [TMPDIR]",
        "",
        ">>> cat input.txt",
        "copied beside the script",
        "to stderr",
        "",
        "Exit code: 4",
        "",
        "Exit code: 1",
        "[ID] [TIMESTAMP] [SHA] took [DURATION] on 127.0.0.1:[PORT] and 127.0.0.1:12009",
        "",
        ">>> [CLI] --version",
        "[VERSION]",
        "host env not passed",
        "",
        "Exit code: 3",
        "",
      ].join("\n"),
    );

    // A missing output.txt fails without the update flag and is written with it.
    expect(() => expectCaseOutput(c, out, false)).toThrow(/missing recording .*group\/one\/output\.txt/);
    expect(existsSync(path.join(c.dir, "output.txt"))).toBe(false);
    expectCaseOutput(c, out, true);
    expect(readFileSync(path.join(c.dir, "output.txt"), "utf8")).toBe(out);
    expect(() => expectCaseOutput(c, `${out}more\n`, false)).toThrow(/re-record with UPDATE_GOLDEN=1/);
  });

  it("skips, saying why, a case that needs ../shared when it is absent; refuses unknown settings", () => {
    const root = tempDir();
    mkdirSync(path.join(root, "needs"));
    writeFileSync(path.join(root, "needs/script"), "true\n");
    writeFileSync(path.join(root, "needs/test.toml"), "RequiresShared = true\n");
    const [c] = discoverCases(root);
    expect(c!.config.requiresShared).toBe(true);
    expect(c!.skip === undefined || c!.skip.startsWith("no ../shared at ")).toBe(true);
    writeFileSync(path.join(root, "needs/test.toml"), "Fixture = ['upstream']\n");
    expect(() => discoverCases(root)).toThrow(/unknown setting\(s\) Fixture/);
  });
});
