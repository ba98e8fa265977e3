import { describe, expect, it } from "vitest";
import { PATCH_IDS } from "../../src/patches/ids.js";
import { PATCHES } from "../../src/patches/index.js";

describe("PATCH_IDS", () => {
  it("lists every patch prepare applies, in order (prepare's no-op check reads it instead of loading them)", () => {
    expect(PATCH_IDS).toEqual(PATCHES.map((p) => p.id));
  });
});
