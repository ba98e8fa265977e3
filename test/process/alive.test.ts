import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { processRuns } from "../../src/process/alive.js";
import { waitFor } from "../../src/retry.js";

/** A real process that runs until the test ends. */
function sleeper(command: string, args: string[]) {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return child;
}

const zombie = (pid: number) => /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));

describe("processRuns, the one pid check", () => {
  it("is true for a running process and false for one that exited", async () => {
    const child = sleeper("sleep", ["30"]);
    expect(processRuns(child.pid)).toBe(true);
    const exited = spawnSync(process.execPath, ["-e", "0"]).pid;
    expect(processRuns(exited)).toBe(false);
  });

  it("is false for no pid or a pid that cannot be one", () => {
    for (const pid of [undefined, 0, -1, 1.5, Number.NaN]) expect(processRuns(pid)).toBe(false);
  });

  it.skipIf(process.platform !== "linux")(
    "counts a zombie as gone, unless asked to count it (what `local down` waits for)",
    async () => {
      // The shell's background child exits at once; the shell became `sleep`, which never reaps it.
      const parent = sleeper("sh", ["-c", "sleep 0 & echo $!; exec sleep 30"]);
      let out = "";
      parent.stdout?.on("data", (c) => {
        out += String(c);
      });
      const pid = await waitFor(() => (out.includes("\n") ? Number(out.trim()) : undefined), {
        timeoutMs: 30_000,
        what: "the background child's pid",
      });
      await waitFor(() => (zombie(pid) ? true : undefined), { timeoutMs: 30_000, what: "a zombie" });
      expect(processRuns(pid)).toBe(false);
      expect(processRuns(pid, { zombieCounts: true })).toBe(true);
    },
  );

  it.skipIf(process.platform === "win32")(
    "counts another user's process as running (kill(0) says EPERM)",
    async () => {
      const modulePath = path.resolve("src/process/alive.ts");
      if (process.getuid?.() !== 0) {
        // Not root: PID 1 is root's, so kill(0) on it is refused with EPERM.
        expect(processRuns(1)).toBe(true);
        return;
      }
      // Root may signal anyone: ask from an unprivileged user about a process of root's (this one).
      const r = spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          `import { processRuns } from ${JSON.stringify(modulePath)};
let eperm = false;
try { process.kill(${process.pid}, 0); } catch (err) { eperm = err.code === "EPERM"; }
console.log(JSON.stringify({ eperm, runs: processRuns(${process.pid}) }));`,
        ],
        { uid: 65534, gid: 65534, encoding: "utf8", env: { ...process.env, HOME: "/tmp" } },
      );
      expect(r.stderr).toBe("");
      expect(JSON.parse(r.stdout)).toEqual({ eperm: true, runs: true });
    },
  );
});
