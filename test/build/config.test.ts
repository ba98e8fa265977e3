import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import { tempDir } from "../support/tmp.js";

describe("build's directories", () => {
  it("assembles the app tree beside the build dir unless APP_DIR says otherwise", () => {
    const cwd = tempDir();
    expect(loadConfig({ cwd, env: {} }).appDir).toBe(path.join(cwd, "build/app"));
    expect(loadConfig({ cwd, env: {}, flags: { "build-dir": "/srv/x/metamcp" } }).appDir).toBe("/srv/x/app");
    expect(
      loadConfig({ cwd, env: { APP_DIR: "out/app" }, flags: { "build-dir": "/srv/x/metamcp" } }).appDir,
    ).toBe(path.join(cwd, "out/app"));
  });
});
