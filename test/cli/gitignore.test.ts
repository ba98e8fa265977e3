import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { PROJECT_FILES } from "../../src/connect/clients.js";
import { PROJECT_ROOT } from "../support/cli.js";

/** What `connect --write` writes in this clone is the user's: git must never offer to commit it. */
describe(".gitignore", () => {
  for (const file of Object.values(PROJECT_FILES)) {
    it(`ignores ${file} (written by connect --write)`, (ctx) => {
      try {
        execFileSync("git", ["rev-parse", "--git-dir"], { cwd: PROJECT_ROOT, stdio: "ignore" });
      } catch {
        return ctx.skip("skipped: not a git checkout");
      }
      const out = execFileSync("git", ["check-ignore", "--no-index", "-v", file], {
        cwd: PROJECT_ROOT,
        encoding: "utf8",
      }).trim();
      expect(out).toContain(file);
    });
  }
});
