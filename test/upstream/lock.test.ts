import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { UserError } from "../../src/errors.js";
import { createLogger, silentLogger } from "../../src/log/logger.js";
import { withDirLock } from "../../src/upstream/lock.js";
import { killHolder, startLockHolder } from "../support/lock-holder.js";
import { tempDir } from "../support/tmp.js";

function capture() {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (c) => {
    text += String(c);
  });
  return { log: createLogger({ stream }), text: () => text };
}

/** A lock left as a killed holder leaves it: the directory, and an owner file naming a pid on `host`. */
function leftLock(target: string, pid: number, host: string): void {
  const lock = `${target}.lock`;
  mkdirSync(lock);
  const ino = (spawnSync("stat", ["-c", "%i", lock], { encoding: "utf8" }).stdout ?? "").trim();
  writeFileSync(
    `${lock}.owner.json`,
    JSON.stringify({ pid, host, boot: "", lockIno: Number(ino), since: "2026-01-01T00:00:00.000Z" }),
  );
}

describe("the mirror lock", () => {
  it("records its owner while held and removes both when done", async () => {
    const target = path.join(tempDir(), "repo.git");
    const seen = await withDirLock(target, silentLogger, { waitMs: 1000, what: "x" }, async () =>
      JSON.parse(readFileSync(`${target}.lock.owner.json`, "utf8")),
    );
    expect(seen).toMatchObject({ pid: process.pid, host: os.hostname() });
    expect(() => readFileSync(`${target}.lock.owner.json`)).toThrow();
  });

  it("waits for a live holder and then says who holds it (exit 2)", async () => {
    const target = path.join(tempDir(), "repo.git");
    const { log, text } = capture();
    const err = await withDirLock(target, silentLogger, { waitMs: 1000, what: "x" }, () =>
      withDirLock(target, log, { waitMs: 400, what: "the clone cache" }, async () => "never").catch(
        (e: unknown) => e,
      ),
    );
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).code).toBe("cache_locked");
    expect((err as UserError).message).toContain(`locked by process ${process.pid} on ${os.hostname()}`);
    expect(text()).toContain(`waiting for process ${process.pid}`);
  });

  it("takes a dead local holder's lock at once, naming it", async () => {
    const target = path.join(tempDir(), "repo.git");
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid;
    leftLock(target, dead, os.hostname());
    const { log, text } = capture();
    // waitMs 0: only reclaiming by owner can succeed (the lock's mtime is fresh, so it is not stale).
    const r = await withDirLock(target, log, { waitMs: 0, what: "x" }, async () => "ran");
    expect(r).toBe("ran");
    expect(text()).toContain(`left by process ${dead} on ${os.hostname()}`);
  });

  it("does not judge another machine's holder by pid; a lock nobody refreshes goes stale", async () => {
    const target = path.join(tempDir(), "repo.git");
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid;
    leftLock(target, dead, "another-host.example");
    const err = await withDirLock(target, silentLogger, { waitMs: 300, what: "x" }, async () => "ran").catch(
      (e: unknown) => e,
    );
    expect((err as UserError).code).toBe("cache_locked");
    // Not refreshed for a minute (a holder refreshes every 10 s): stale, taken.
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${target}.lock`, old, old);
    expect(await withDirLock(target, silentLogger, { waitMs: 0, what: "x" }, async () => "ran")).toBe("ran");
  });

  it("refuses while another live process holds it, and takes it at once when that process is killed -9", async () => {
    const dir = tempDir();
    const target = path.join(dir, "repo.git");
    // A real second process takes the lock through the same code and holds it until killed.
    const script = path.join(dir, "holder.mts");
    writeFileSync(
      script,
      `import { withDirLock } from ${JSON.stringify(path.resolve("src/upstream/lock.ts"))};
import { silentLogger } from ${JSON.stringify(path.resolve("src/log/logger.ts"))};
await withDirLock(${JSON.stringify(target)}, silentLogger, { waitMs: 0, what: "x" }, async () => {
  process.stdout.write("held\\n");
  await new Promise(() => setInterval(() => {}, 1000));
});
`,
    );
    const holder = await startLockHolder(script);

    const err = await withDirLock(
      target,
      silentLogger,
      { waitMs: 500, what: "the clone cache" },
      async () => "ran",
    ).catch((e: unknown) => e);
    expect((err as UserError).code).toBe("cache_locked");
    expect((err as UserError).message).toContain(`locked by process ${holder.pid} on ${os.hostname()}`);

    await killHolder(holder);
    const { log, text } = capture();
    // waitMs 0: the lock is fresh (not stale), so only recognising the dead owner can take it.
    expect(await withDirLock(target, log, { waitMs: 0, what: "x" }, async () => "ran")).toBe("ran");
    expect(text()).toMatch(
      new RegExp(`left by process ${holder.pid} on ${os.hostname()} \\(since [^)]+\\), which no longer runs`),
    );
  });

  it("throws at once an error that is not a held lock (no waiting on it)", async () => {
    const dir = tempDir();
    // The lock's folder cannot be made: its parent is a file.
    writeFileSync(path.join(dir, "file"), "");
    const target = path.join(dir, "file", "repo.git");
    const err = await withDirLock(
      target,
      silentLogger,
      { waitMs: 60_000, what: "x" },
      async () => "ran",
    ).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).toMatch(/ENOTDIR|EEXIST/);
  });
});
