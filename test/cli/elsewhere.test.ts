import { cpSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

/**
 * The printed next steps (`./bin/metamcp-databricks.js local status`) run from another folder: the
 * relative default state dir is not the clone's. Each local command names the clone's state and the
 * command that works from anywhere.
 */
describe("local commands run from another folder", () => {
  it("name the clone's state dir and `cd <clone> && …`", async () => {
    const clone = tempDir("mmdb-clone-");
    for (const d of ["bin", "dist"])
      cpSync(path.join(PROJECT_ROOT, d), path.join(clone, d), { recursive: true });
    cpSync(path.join(PROJECT_ROOT, "package.json"), path.join(clone, "package.json"));
    symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(clone, "node_modules"));
    mkdirSync(path.join(clone, ".metamcp-local"));
    writeFileSync(path.join(clone, ".metamcp-local/local.log"), "");
    const elsewhere = tempDir("mmdb-elsewhere-");
    for (const cmd of ["status", "token", "logs"]) {
      const r = await execa("node", [path.join(clone, "bin/metamcp-databricks.js"), "local", cmd], {
        cwd: elsewhere,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1" },
        extendEnv: false,
        reject: false,
      });
      expect(r.stderr, cmd).toContain(`the clone's is ${path.join(clone, ".metamcp-local")}`);
      expect(r.stderr, cmd).toContain(`cd ${clone} && ./bin/metamcp-databricks.js local ${cmd}`);
    }
    // From the clone itself: no such line.
    const here = await execa("node", ["bin/metamcp-databricks.js", "local", "status"], {
      cwd: clone,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: "1" },
      extendEnv: false,
      reject: false,
    });
    expect(here.stderr).not.toContain("the clone's is");
  });
});
