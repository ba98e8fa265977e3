import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { expectGolden, GOLDEN_DIR, updatingGoldens } from "../support/golden.js";
import { tempDir } from "../support/tmp.js";

describe("expectGolden", () => {
  it("fails on a missing recording without UPDATE_GOLDEN=1, saying how to create it, and writes nothing", () => {
    const name = "no-such-recording-ever";
    expect(() => expectGolden(name, "text\n", { update: false })).toThrow(
      /missing recording test\/golden\/no-such-recording-ever\.txt: create it with `UPDATE_GOLDEN=1 npx vitest run/,
    );
    expect(existsSync(path.join(GOLDEN_DIR, `${name}.txt`))).toBe(false);
  });

  it("writes the recording with the update flag, then compares against it", () => {
    const dir = tempDir();
    expectGolden("sub/new", "first\n", { dir, update: true });
    expect(readFileSync(path.join(dir, "sub/new.txt"), "utf8")).toBe("first\n");
    expectGolden("sub/new", "first\n", { dir, update: false });
    expect(() => expectGolden("sub/new", "second\n", { dir, update: false })).toThrow(
      /re-record with UPDATE_GOLDEN=1/,
    );
    // Updating rewrites an existing recording too.
    expectGolden("sub/new", "second\n", { dir, update: true });
    expect(readFileSync(path.join(dir, "sub/new.txt"), "utf8")).toBe("second\n");
  });

  it("takes the flag from UPDATE_GOLDEN=1 only (CI or any other value does not write)", () => {
    expect(updatingGoldens({ UPDATE_GOLDEN: "1" })).toBe(true);
    expect(updatingGoldens({ UPDATE_GOLDEN: "true" })).toBe(false);
    expect(updatingGoldens({ CI: "1" })).toBe(false);
    expect(updatingGoldens({})).toBe(false);
    const dir = tempDir();
    writeFileSync(path.join(dir, "kept.txt"), "kept\n");
    expectGolden("kept", "kept\n", { dir });
  });
});
