import { writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { acquireLock, localPaths } from "../../src/local/state.js";
import { killHolder, startLockHolder } from "../support/lock-holder.js";
import { tempDir } from "../support/tmp.js";

describe("the `local up` lock (one per state directory)", () => {
  it("names a live holder; takes the lock at once when that process is killed -9", async () => {
    const dir = tempDir();
    const paths = localPaths(path.join(dir, "state"));
    // A real second process takes the lock through the same code; `local` on its command line, like `up`.
    const script = path.join(dir, "holder.mts");
    writeFileSync(
      script,
      `import { acquireLock, localPaths } from ${JSON.stringify(path.resolve("src/local/state.ts"))};
await acquireLock(localPaths(${JSON.stringify(paths.root)}));
process.stdout.write("held\\n");
setInterval(() => {}, 1000);
`,
    );
    const holder = await startLockHolder(script, ["local"]);

    const err = await acquireLock(paths).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).code).toBe("local_already_running");
    expect((err as UserError).message).toContain(`pid ${holder.pid}`);

    await killHolder(holder);
    // The lock is fresh (not stale): only recognising the dead owner can take it, and at once.
    const release = await acquireLock(paths);
    await release();
  });
});
