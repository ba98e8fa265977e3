import { describe, expect, it } from "vitest";
import type { Logger } from "../../src/log/logger.js";
import { logProgress, runSteps, type Step, type StepProgress } from "../../src/log/steps.js";

/** What the progress output says, line by line. */
function recorder(): StepProgress & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    started: (title) => lines.push(`${title}…`),
    done: (title) => lines.push(`${title}: done`),
    skipped: (title, reason) => lines.push(`${title}: skipped (${reason})`),
  };
}

describe("runSteps", () => {
  it("says each title in order, and a skipped step says it was skipped and why, without running it", async () => {
    const ran: string[] = [];
    const steps: Step<{ audit: boolean }>[] = [
      { title: "connect", task: () => void ran.push("connect") },
      {
        title: "audit table",
        skip: (c) => !c.audit && "METAMCP_AUDIT=off",
        task: () => void ran.push("audit"),
      },
      { title: "migrations", task: async () => void ran.push("migrations") },
    ];
    const progress = recorder();
    await runSteps(steps, { audit: false }, { progress });
    expect(progress.lines).toEqual([
      "connect…",
      "connect: done",
      "audit table: skipped (METAMCP_AUDIT=off)",
      "migrations…",
      "migrations: done",
    ]);
    expect(ran).toEqual(["connect", "migrations"]);
  });

  it("stops at the first failing step: its error comes out and no later step starts", async () => {
    const progress = recorder();
    const boom = new Error("no database");
    const run = runSteps(
      [
        { title: "connect", task: () => Promise.reject(boom) },
        { title: "migrations", task: () => {} },
      ],
      {},
      { progress },
    );
    await expect(run).rejects.toBe(boom);
    expect(progress.lines).toEqual(["connect…"]);
  });

  it("starts no step once its signal is aborted, throwing the abort's reason", async () => {
    const progress = recorder();
    const stop = new AbortController();
    const reason = new Error("SIGTERM");
    const run = runSteps(
      [
        { title: "credential", task: () => stop.abort(reason) },
        { title: "MetaMCP servers", task: () => {} },
      ],
      {},
      { progress, signal: stop.signal },
    );
    await expect(run).rejects.toBe(reason);
    expect(progress.lines).toEqual(["credential…", "credential: done"]);
  });

  it("logProgress words them as the app's log shows them", async () => {
    const lines: string[] = [];
    const log = { info: (m: string) => lines.push(m) } as unknown as Logger;
    await runSteps(
      [
        { title: "public URL", skip: () => "METAMCP_APP_URL is https://x.example", task: () => {} },
        { title: "migrations", task: () => {} },
      ],
      undefined,
      { progress: logProgress(log) },
    );
    expect(lines).toEqual([
      "public URL: skipped, METAMCP_APP_URL is https://x.example",
      "migrations…",
      expect.stringMatching(/^migrations: done in \d+ ms$/),
    ]);
  });
});
