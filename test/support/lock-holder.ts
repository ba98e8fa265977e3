import { type ChildProcess, spawn } from "node:child_process";
import { onTestFinished } from "vitest";
import { waitFor } from "../../src/retry.js";

/**
 * Runs `script` (tsx) as a real second process that takes a lock and prints "held"; resolves once it holds
 * it. Killed with SIGKILL when the test ends, so a failing test leaves no holder behind.
 */
export async function startLockHolder(script: string, args: string[] = []): Promise<ChildProcess> {
  const holder = spawn(process.execPath, ["--import", "tsx", script, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  onTestFinished(() => {
    if (holder.exitCode === null && holder.signalCode === null) holder.kill("SIGKILL");
  });
  let out = "";
  holder.stdout?.on("data", (c) => {
    out += String(c);
  });
  await waitFor(() => (out.includes("held") ? true : undefined), { timeoutMs: 60_000, what: "the holder" });
  return holder;
}

/** Kills the holder with SIGKILL (no chance to release) and waits until it has exited. */
export async function killHolder(holder: ChildProcess): Promise<void> {
  const exited = new Promise((r) => holder.once("exit", r));
  holder.kill("SIGKILL");
  await exited;
}
