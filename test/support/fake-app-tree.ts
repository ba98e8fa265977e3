import { copyFileSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PROJECT_ROOT } from "./cli.js";

/**
 * A built MetaMCP-shaped app tree (what `build` assembles), small enough to start in a second:
 * - runtime/start.mjs: OUR real runtime bundle (dist/runtime/start.mjs, built by `pretest`);
 * - metamcp/apps/backend/dist/index.js: a tiny server with upstream's pool shape AS PATCHED by
 *   db-pool-credentials (password read per connection from METAMCP_PG_PASSWORD_FILE), answering
 *   /health, /metamcp/health, /metamcp/notes (write/read a row), /metamcp/fresh (a NEW login per call),
 *   /metamcp/slow, /metamcp/sse (an event stream), /metamcp/exit0 (exits cleanly: must not pass for success) and /metamcp/pid;
 * - metamcp/apps/backend/drizzle: one migration + drizzle's journal, unqualified (search_path decides);
 * - metamcp/apps/frontend/server.js: answers everything else.
 * `pg` resolves through a node_modules link to this project's (the real tree ships its own).
 */
const BACKEND = String.raw`
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import pg from "pg";

const passwordFromFile = () => readFileSync(process.env.METAMCP_PG_PASSWORD_FILE, "utf8").trim();
const pool = new pg.Pool({
  ...(process.env.METAMCP_PG_PASSWORD_FILE ? { password: passwordFromFile } : { connectionString: process.env.DATABASE_URL }),
  idleTimeoutMillis: 200,
});
pool.on("error", () => {});

const server = createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  const send = (status, body) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  try {
    if (url.pathname === "/health" || url.pathname === "/metamcp/health") return send(200, { status: "ok" });
    if (url.pathname === "/metamcp/pid") return send(200, { pid: process.pid });
    if (url.pathname === "/metamcp/notes" && req.method === "POST") {
      const r = await pool.query("INSERT INTO notes (body) VALUES ($1) RETURNING id", [url.searchParams.get("body") ?? ""]);
      return send(200, { id: r.rows[0].id });
    }
    if (url.pathname === "/metamcp/notes") {
      const r = await pool.query("SELECT body, current_schema() AS schema FROM notes ORDER BY id");
      return send(200, { bodies: r.rows.map((x) => x.body), schema: r.rows[0]?.schema ?? null });
    }
    if (url.pathname === "/metamcp/fresh") {
      const c = new pg.Client({ password: passwordFromFile });
      await c.connect();
      const r = await c.query("SELECT current_schema() AS schema");
      await c.end();
      return send(200, r.rows[0]);
    }
    if (url.pathname === "/metamcp/slow") {
      await new Promise((r) => setTimeout(r, Number(url.searchParams.get("ms") ?? 1000)));
      return send(200, { slow: true });
    }
    if (url.pathname === "/metamcp/sse") {
      // An SSE stream like MCP's: one event per tick, each stamped with the server's clock.
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const n = Number(url.searchParams.get("n") ?? 5);
      for (let i = 0; i < n; i++) {
        res.write("data: " + JSON.stringify({ i, t: Date.now() }) + "\n\n");
        await new Promise((r) => setTimeout(r, Number(url.searchParams.get("gap") ?? 5)));
      }
      return res.end();
    }
    if (url.pathname === "/metamcp/exit0") {
      send(200, { exiting: true });
      setTimeout(() => process.exit(0), 50);
      return;
    }
    send(404, { error: "not found" });
  } catch (err) {
    send(500, { error: String(err.message ?? err) });
  }
});
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("backend listening on " + process.env.PORT));
process.on("SIGTERM", () => server.close(() => pool.end().then(() => process.exit(0))));
`;

const FRONTEND = `
import { createServer } from "node:http";
createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end("<html>frontend " + req.url + "</html>");
}).listen(Number(process.env.PORT), process.env.HOSTNAME, () => console.log("frontend ready"));
process.on("SIGTERM", () => process.exit(0));
`;

const MIGRATION = `CREATE TABLE "notes" (
\t"id" serial PRIMARY KEY NOT NULL,
\t"body" text NOT NULL
);
`;

export function createFakeAppTree(dir: string): string {
  const be = path.join(dir, "metamcp/apps/backend");
  const fe = path.join(dir, "metamcp/apps/frontend");
  mkdirSync(path.join(dir, "runtime"), { recursive: true });
  mkdirSync(path.join(be, "dist"), { recursive: true });
  mkdirSync(path.join(be, "drizzle/meta"), { recursive: true });
  mkdirSync(fe, { recursive: true });
  copyFileSync(path.join(PROJECT_ROOT, "dist/runtime/start.mjs"), path.join(dir, "runtime/start.mjs"));
  writeFileSync(path.join(dir, "metamcp/package.json"), '{"type":"module"}\n');
  writeFileSync(path.join(be, "dist/index.js"), BACKEND);
  writeFileSync(path.join(fe, "server.js"), FRONTEND);
  writeFileSync(path.join(be, "drizzle/0000_notes.sql"), MIGRATION);
  writeFileSync(
    path.join(be, "drizzle/meta/_journal.json"),
    `${JSON.stringify({ version: "7", dialect: "postgresql", entries: [{ idx: 0, version: "7", when: 1750000000000, tag: "0000_notes", breakpoints: true }] }, null, 2)}\n`,
  );
  symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(dir, "metamcp/node_modules"));
  return dir;
}
