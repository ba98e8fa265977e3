import { describe, expect, it } from "vitest";
import { nearestTags, pickLatestStableRelease, stableVersion } from "../../src/upstream/refs.js";

/** Upstream's real tag names (names only), the trap the earlier attempt fell into. */
const UPSTREAM_LIKE = [
  "v2.3.8",
  "v2.4.0",
  "v2.4.0-test",
  "v2.4.4-test",
  "v2.4.21",
  "v2.4.22",
  "v2.5.0",
  "v2.5.3",
  "v2.5.4-docker-per-mcp",
  "v2.5.7-docker-per-mcp",
  "latest",
].map((name) => ({ name, commit: `c-${name}` }));

describe("stable release selection", () => {
  it("accepts only plain vX.Y.Z", () => {
    expect(stableVersion("v2.4.22")).toBe("2.4.22");
    expect(stableVersion("v2.4.0-test")).toBeUndefined();
    expect(stableVersion("v2.5.7-docker-per-mcp")).toBeUndefined();
    expect(stableVersion("2.4.22")).toBeUndefined();
  });

  it("picks the newest plain tag on the default branch, skipping suffixed tags and side-line tags", () => {
    const onMain = new Set(["v2.3.8", "v2.4.0", "v2.4.21", "v2.4.22"]);
    const choice = pickLatestStableRelease(UPSTREAM_LIKE, (t) => onMain.has(t.name), "main");
    expect(choice.chosen?.name).toBe("v2.4.22");
    expect(choice.skipped).toEqual([
      { tag: "v2.5.7-docker-per-mcp", reason: "pre-release or suffixed tag" },
      { tag: "v2.5.4-docker-per-mcp", reason: "pre-release or suffixed tag" },
      { tag: "v2.5.3", reason: "not on main" },
      { tag: "v2.5.0", reason: "not on main" },
    ]);
  });

  it("picks the highest version when every stable tag is on the default branch", () => {
    const choice = pickLatestStableRelease(UPSTREAM_LIKE, () => true);
    expect(choice.chosen?.name).toBe("v2.5.3");
  });

  it("finds nothing when no stable tag is on the default branch", () => {
    expect(pickLatestStableRelease(UPSTREAM_LIKE, () => false).chosen).toBeUndefined();
  });

  it("lists the nearest tags for a typo", () => {
    const names = UPSTREAM_LIKE.map((t) => t.name);
    expect(nearestTags("v2.4.23", names, 3)).toEqual(["v2.4.22", "v2.4.21", "v2.4.4-test"]);
    expect(nearestTags("lates", names, 1)).toEqual(["latest"]);
    expect(nearestTags("v2.5.3x", names, 1)).toEqual(["v2.5.3"]);
  });
});
