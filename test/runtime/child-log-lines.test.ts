import { randomUUID } from "node:crypto";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import { condenseIdLists, quietLinesFor } from "../../src/runtime/child-log-lines.js";
import { SupervisedChild } from "../../src/runtime/children.js";

/**
 * MetaMCP's backend prints `console.log("Available sessions:", sessionManager.getSessionIds())` on every request
 * naming a session (streamable-http.ts, v2.4.x and main). Here a real child prints exactly that, as Node's
 * console formats it, and the app's log must say how many, never which.
 */
describe("a child's printed lists of session ids", () => {
  it("become one line with their count, in the app's log; other lines pass as printed", async () => {
    const many = Array.from({ length: 300 }, () => randomUUID());
    const two = [randomUUID(), randomUUID()];
    const script = `
      const many = ${JSON.stringify(many)};
      console.log("Found session ${many[0]}, handling request");
      console.log("Available sessions:", many);
      console.log("Available sessions:", ${JSON.stringify(two)});
      console.log("Available sessions:", []);
      console.log("tools:", ${JSON.stringify(Array.from({ length: 12 }, (_, i) => `tool_number_${i}`))});
      console.log("done");
      setInterval(() => {}, 1000);
    `;
    const out = new PassThrough();
    let text = "";
    out.on("data", (c: Buffer) => {
      text += c.toString("utf8");
    });
    const child = new SupervisedChild(
      {
        name: "backend",
        command: process.execPath,
        args: ["-e", script],
        cwd: process.cwd(),
        env: { PATH: process.env.PATH ?? "" },
      },
      createLogger({ json: true, stream: out, tag: "backend" }),
    );
    child.start(() => {});
    try {
      await waitFor(() => (text.includes('"msg":"done"') ? true : undefined), {
        timeoutMs: 20_000,
        intervalMs: 50,
        what: "the child's lines",
      });
    } finally {
      await child.stop(2000);
    }
    const msgs = text
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    // The one id upstream names in a sentence stays: it says which session a request was for.
    expect(msgs).toContain(`Found session ${many[0]}, handling request`);
    expect(msgs).toContain("Available sessions: [300 ids, not logged]");
    expect(msgs).toContain("Available sessions: [2 ids, not logged]");
    expect(msgs).toContain("Available sessions: []");
    for (const id of [...many.slice(1), ...two]) expect(text).not.toContain(id);
    // A list of anything else is upstream's to print as it does.
    expect(msgs.some((m) => m.includes("'tool_number_11'"))).toBe(true);
    expect(msgs.length).toBeLessThan(30);
  });

  it("a held line is let go when what follows is not a list of ids, or when nothing follows", async () => {
    const lines: string[] = [];
    const f = condenseIdLists((l) => lines.push(l));
    f.line("config: [");
    f.line("  'not-an-id',");
    f.line("]");
    f.line("waiting [");
    await waitFor(() => (lines.includes("waiting [") ? true : undefined), {
      timeoutMs: 5000,
      intervalMs: 20,
      what: "the held line",
    });
    f.line("sessions: [");
    f.line(`  '${randomUUID()}',`);
    f.line("Error: backend stopped");
    f.end();
    expect(lines).toEqual([
      "config: [",
      "  'not-an-id',",
      "]",
      "waiting [",
      "sessions: [ [1 id, not logged] …",
      "Error: backend stopped",
    ]);
  });

  it("upstream's per-request lines are relayed only when LOG_LEVEL asks for them, as MetaMCP main's logger does", () => {
    const id = randomUUID();
    // v2.4.22's streamable-http.ts, one POST naming a session, then lines that must always pass.
    const printed = [
      "POST /mcp request for endpoint: demo",
      "Authentication method: api_key",
      `Session ID: ${id}`,
      `Looking up existing session: ${id}`,
      "Available sessions: [",
      `  '${id}',`,
      "]",
      `Found session ${id}, handling request`,
      "Server is running on port 12009",
      "Error: connect ECONNREFUSED 127.0.0.1:5432",
    ];
    const relayed = (level: string | undefined) => {
      const lines: string[] = [];
      const f = condenseIdLists((l) => lines.push(l), { drop: quietLinesFor(level) });
      for (const l of printed) f.line(l);
      f.end();
      return lines;
    };
    for (const level of [undefined, "errors-only", "none"])
      expect(relayed(level)).toEqual([
        "Server is running on port 12009",
        "Error: connect ECONNREFUSED 127.0.0.1:5432",
      ]);
    for (const level of ["all", "info"])
      expect(relayed(level)).toEqual([
        ...printed.slice(0, 4),
        "Available sessions: [1 id, not logged]",
        ...printed.slice(7),
      ]);
  });
});
