import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import pg from "pg";
import { afterAll, beforeAll, expect } from "vitest";
import { freePort } from "../../src/local/postgres.js";
import { localPaths, readRunState } from "../../src/local/state.js";
import { localUserToken } from "../../src/local/user-token.js";
import { type CliResult, runCli } from "./cli.js";
import { createFakeAppTree, freeInternalPorts, type InternalPorts } from "./fake-app-tree.js";

/**
 * The local stack as the suites drive it through the real CLI (`local up --no-build` on the fake MetaMCP-shaped
 * tree, embedded PostgreSQL, the Databricks stand-in and its Apps proxy): one folder per file holding the tree
 * and the state, MetaMCP's internal ports free ones (upstream's 12008/12009 may be a `make local`'s), the
 * proxy's port picked once. `useLocalStack` makes it in beforeAll and takes it down (`local down`) in afterAll.
 */
export interface LocalStack {
  /** The file's folder: app/ (the fake tree), state/ (LOCAL_STATE_DIR). */
  work: string;
  appDir: string;
  stateDir: string;
  /** The Apps proxy's port (`--port`). */
  port: number;
  internal: InternalPorts;
  /** What every CLI call gets: APP_DIR, LOCAL_STATE_DIR, the internal ports and the file's own entries. */
  env: Record<string, string>;
  /** The proxy's URL, once `up` has answered. */
  appUrl: string;
  cli(args: string[], options?: { env?: Record<string, string>; timeoutMs?: number }): Promise<CliResult>;
  /** `--json local up --detach --no-build --port <port> …args`, which must succeed; its appUrl is kept. */
  up(args?: string[], env?: Record<string, string>): Promise<CliResult & { appUrl: string }>;
  /** A fresh Databricks token of the default local user or of `email` (as `local token --user` gives). */
  tokenOf(email?: string): Promise<string>;
  /** A person signs in at the stand-in's login page once (as a browser does): then they are a workspace user. */
  signIn(email: string, name?: string): Promise<Response>;
}

export interface LocalStackOptions {
  /** Entries over APP_DIR / LOCAL_STATE_DIR / the internal ports, for every CLI call of the file. */
  env?: (work: string) => Record<string, string>;
  /** How long one CLI call may take (default 120 s; `up` of several instances takes longer). */
  timeoutMs?: number;
}

export function useLocalStack(name: string, options: LocalStackOptions = {}): LocalStack {
  const stack = { appUrl: "" } as LocalStack;
  const cli: LocalStack["cli"] = (args, o = {}) =>
    runCli(args, {
      cwd: stack.work,
      env: { ...stack.env, ...o.env },
      timeoutMs: o.timeoutMs ?? options.timeoutMs ?? 120_000,
    });
  Object.assign(stack, {
    cli,
    up: async (args: string[] = [], env?: Record<string, string>) => {
      const r = await cli(
        ["--json", "local", "up", "--detach", "--no-build", "--port", String(stack.port), ...args],
        { env },
      );
      expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
      stack.appUrl = (JSON.parse(r.stdout) as { appUrl: string }).appUrl;
      return { ...r, appUrl: stack.appUrl };
    },
    tokenOf: async (email?: string) => (await localUserToken(stack.stateDir, email ? { email } : {})).token,
    signIn: async (email: string, personName = email) => {
      const login = new URL((await fetch(stack.appUrl, { redirect: "manual" })).headers.get("location")!);
      const signed = await fetch(new URL("/login.html", login), {
        method: "POST",
        body: new URLSearchParams({
          email,
          name: personName,
          redirect_uri: login.searchParams.get("redirect_uri")!,
          state: "/",
        }),
        redirect: "manual",
      });
      expect(signed.status).toBe(302);
      return signed;
    },
  });

  beforeAll(async () => {
    stack.work = mkdtempSync(path.join(os.tmpdir(), `mmdb-${name}-`));
    chmodSync(stack.work, 0o755); // as root, PostgreSQL's own user must reach the data dir inside it
    stack.appDir = path.join(stack.work, "app");
    stack.stateDir = path.join(stack.work, "state");
    stack.internal = await freeInternalPorts();
    createFakeAppTree(stack.appDir, { backendPort: stack.internal.backendPort });
    stack.port = await freePort();
    stack.env = {
      APP_DIR: stack.appDir,
      LOCAL_STATE_DIR: stack.stateDir,
      ...stack.internal.env,
      ...options.env?.(stack.work),
    };
  });

  afterAll(async () => {
    if (!stack.work) return;
    await cli(["local", "down"]);
    rmSync(stack.work, { recursive: true, force: true });
  }, 60_000);

  return stack;
}

/**
 * A connection to the running stack's app database as its owner would open it (the stand-in's superuser, whose
 * password is in the state's secrets file): tests look at the rows behind what they did. Close it in afterAll.
 */
export async function ownerDatabase(stateDir: string): Promise<pg.Client> {
  const paths = localPaths(stateDir);
  const state = readRunState(paths)!;
  const secrets = JSON.parse(readFileSync(paths.secretsFile, "utf8")) as { pgSuperPassword: string };
  const admin = {
    host: "127.0.0.1",
    port: state.ports.postgres,
    user: "postgres",
    password: secrets.pgSuperPassword,
  };
  const probe = new pg.Client({ ...admin, database: "postgres" });
  await probe.connect();
  const dbs = await probe.query<{ datname: string }>(
    "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'",
  );
  await probe.end();
  const db = new pg.Client({ ...admin, database: dbs.rows[0]!.datname });
  await db.connect();
  return db;
}

/** A fetch that sends the Databricks token (`token`, or what it gives at each call) plus `extra` headers. */
export function bearerFetch(
  token: string | (() => Promise<string>),
  extra: Record<string, string> = {},
): (url: string | URL, init?: RequestInit) => Promise<Response> {
  return async (url, init) => {
    const headers = new Headers(init?.headers);
    headers.set("authorization", `Bearer ${typeof token === "string" ? token : await token()}`);
    for (const [k, v] of Object.entries(extra)) headers.set(k, v);
    return await fetch(url, { ...init, headers, redirect: "manual" });
  };
}

/** A real MCP SDK client over Streamable HTTP, connected with `fetchFn`. */
export async function mcpClient(
  url: string,
  fetchFn: ReturnType<typeof bearerFetch>,
  name = "local-rig-client",
): Promise<Client> {
  const client = new Client({ name, version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: fetchFn }));
  return client;
}

/** The first text of a tool call's answer. */
export const toolText = (r: unknown): string => (r as { content: { text: string }[] }).content[0]?.text ?? "";

/** An MCP initialize, raw: to see the status and body MetaMCP answers before any session exists. */
export function rawInitialize(
  url: string,
  fetchFn: (url: string, init?: RequestInit) => Promise<Response>,
): Promise<Response> {
  return fetchFn(url, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-03-26", capabilities: {}, clientInfo: { name: "t", version: "1" } },
    }),
  });
}

/** A process that exists and is not a zombie. */
export function isAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

/** Whether nothing listens on host:port (we could listen there ourselves). */
export async function portFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** An app tree whose start command is `script` (the platform runs `node runtime/start.mjs` in it). */
export function scriptedAppTree(dir: string, script: string): string {
  mkdirSync(path.join(dir, "runtime"), { recursive: true });
  writeFileSync(path.join(dir, "runtime/start.mjs"), script);
  return dir;
}
