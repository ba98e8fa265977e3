import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { runStep } from "../../src/build/steps.js";
import { UserError } from "../../src/errors.js";
import { createLogger } from "../../src/log/logger.js";

function capture() {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk) => {
    text += String(chunk);
  });
  return { log: createLogger({ stream }), text: () => text };
}

/** A real child process printing what pnpm 9's `deploy --prod` prints for the backend's dev-only tools. */
function printing(lines: string[], exitCode = 0) {
  const script = `for (const l of ${JSON.stringify(lines)}) console.log(l); process.exit(${exitCode});`;
  return { command: process.execPath, args: ["-e", script], cwd: process.cwd(), env: process.env };
}

/** The child's output lines as relayed (`[step +1.2s] line`), without the echoed command line. */
const relayed = (text: string) =>
  text
    .split("\n")
    .filter((l) => /^\[[\w-]+ \+\d+\.\ds\] /.test(l))
    .join("\n");

const expected = {
  pattern: /WARN\s+Failed to create bin at /,
  explain: (n: number) => `${n} harmless warning(s)`,
};
const lines = [
  "Progress: resolved 464, reused 385, downloaded 0, added 151, done",
  " WARN  Failed to create bin at /x/node_modules/.bin/esbuild. ENOENT: no such file or directory",
  " WARN  Failed to create bin at /x/node_modules/.bin/vite. ENOENT: no such file or directory",
];

describe("runStep", () => {
  it("relays every output line, and folds the step's known-harmless lines into one explained line", async () => {
    const { log, text } = capture();
    await runStep({ name: "backend-deps", ...printing(lines), expected }, log);
    expect(text()).toContain("added 151, done");
    expect(relayed(text())).not.toContain("Failed to create bin");
    expect(text()).toContain("[backend-deps] 2 harmless warning(s)");
  });

  it("without known-harmless lines for the step, relays them all", async () => {
    const { log, text } = capture();
    await runStep({ name: "install", ...printing(lines) }, log);
    expect(relayed(text()).match(/Failed to create bin/g)).toHaveLength(2);
  });

  it("a failing step still shows the folded lines in its error tail", async () => {
    const { log } = capture();
    const error = await runStep({ name: "backend-deps", ...printing(lines, 1), expected }, log).catch(
      (e) => e,
    );
    expect(error).toBeInstanceOf(UserError);
    expect((error as UserError).message).toContain("bin/esbuild");
    expect((error as UserError).message).toContain("failed with exit code 1");
  });
});
