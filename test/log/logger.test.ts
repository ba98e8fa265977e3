import { Writable } from "node:stream";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/logger.js";

/** A stream that records each write the logger's lines arrive in (one `_write`, or one `_writev` of many). */
function recording() {
  const writes: string[][] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      writes.push([chunk.toString("utf8")]);
      done();
    },
    writev(chunks, done) {
      writes.push(chunks.map((c) => (c.chunk as Buffer).toString("utf8")));
      done();
    },
  });
  return { stream, writes };
}

describe("a coalescing logger (the relay of a child's lines)", () => {
  it("writes one tick's lines in one write, in order, and the next tick's in the next", async () => {
    const { stream, writes } = recording();
    const log = createLogger({ json: true, stream, tag: "backend", coalesce: true });
    for (let i = 0; i < 8; i++) log.info(`line ${i}`);
    await new Promise((r) => setImmediate(r));
    log.info("next tick");
    await new Promise((r) => setImmediate(r));
    expect(writes.map((w) => w.length)).toEqual([8, 1]);
    expect(writes.flat().map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
      ...Array.from({ length: 8 }, (_, i) => `line ${i}`),
      "next tick",
    ]);
  });

  it("without coalesce each line is its own write (the CLI's loggers)", async () => {
    const { stream, writes } = recording();
    const log = createLogger({ json: true, stream });
    log.info("a");
    log.info("b");
    await new Promise((r) => setImmediate(r));
    expect(writes.map((w) => w.length)).toEqual([1, 1]);
  });

  it("a line logged right before process.exit() still reaches the pipe", async () => {
    const script = [
      `import { createLogger } from ${JSON.stringify(new URL("../../src/log/logger.ts", import.meta.url).href)};`,
      `const log = createLogger({ json: true, tag: "backend", coalesce: true });`,
      `log.error("the backend could not start: fatal");`,
      `process.exit(3);`,
    ].join("\n");
    const r = await execa(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      reject: false,
    });
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain('"msg":"the backend could not start: fatal"');
  });
});
