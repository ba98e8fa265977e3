import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterAll, afterEach, beforeAll } from "vitest";
import { loadConfig } from "../../src/config/load.js";
import {
  type LocalPlatform,
  type StartPlatformOptions,
  startPlatform,
} from "../../src/local/platform/index.js";
import { type EmbeddedPostgresHandle, freePort } from "../../src/local/postgres.js";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import {
  createFakeAppTree,
  type FakeAppTreeOptions,
  freeInternalPorts,
  type InternalPorts,
} from "./fake-app-tree.js";
import { holdUpstreamPorts } from "./upstream-port-holders.js";

/**
 * The runtime bundle (`node runtime/start.mjs`, as app.yaml runs it) on a fake MetaMCP-shaped tree, against the
 * Databricks stand-in (src/local/platform) and a Lakebase-like PostgreSQL whose passwords are the issued
 * credentials. MetaMCP's internal ports are free ones picked per file (METAMCP_BACKEND_PORT / _FRONTEND_PORT,
 * the tree built for them), so a file runs beside anything holding upstream's 12008/12009 (held here too with
 * TEST_HOLD_UPSTREAM_PORTS=1). `useRuntimeRig` starts it all in beforeAll, stops every runtime a test started
 * (its whole process group) in afterEach, and the rest in afterAll.
 */
export const RIG_AUTH_SECRET = "a-real-looking-secret-0123456789";

export interface RuntimeProcess {
  child: ChildProcess;
  /** Everything it printed, line by line, as printed (JSON lines off a TTY). */
  raw: string[];
  /** The same as `[tag] level: message` (lines that are not JSON as printed). */
  lines: string[];
  exited: Promise<{ code: number | null; ms: number }>;
  /** Its TMPDIR (where its credential folder goes). */
  tmp: string;
}

export interface RuntimeRigOptions {
  /** The Lakebase-like PostgreSQL; its role is the app's service principal. Stopped in afterAll. */
  postgres: EmbeddedPostgresHandle & { database: string; role: string };
  /** The service principal's secret (each file its own, so a leak names the file). */
  clientSecret: string;
  credentialTtlSeconds: number;
  /** Names the temp folders (mmdb-<name>-tree-…, mmdb-<name>-tmp-…). */
  name: string;
  tree?: Omit<FakeAppTreeOptions, "backendPort">;
  /** Over the platform's and the internal ports' variables, for every start (a gate's DATABRICKS_HOST). */
  env?: () => Record<string, string>;
  platform?: Partial<Pick<StartPlatformOptions, "userTokenTtlSeconds" | "proxy">>;
}

export interface RuntimeRig {
  platform: LocalPlatform;
  treeDir: string;
  internal: InternalPorts;
  appPort: number;
  /** Upstream's ports this file holds (none unless TEST_HOLD_UPSTREAM_PORTS=1). */
  heldUpstreamPorts: number[];
  /** Starts the runtime in its own process group, with the app's environment plus `overrides`. */
  start(overrides?: Record<string, string | undefined>, options?: { tmp?: string }): RuntimeProcess;
  /** A request to the app's port (what the Apps proxy forwards to). */
  appGet(pathname: string, init?: RequestInit): Promise<Response>;
  /** The first line (of `lines`) matching `pattern`; fails when the runtime exits first. */
  waitLine(r: RuntimeProcess, pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** "MetaMCP is ready" said and /metamcp/health answering 200. */
  waitReady(r: RuntimeProcess): Promise<void>;
  /** Its exit code, or a failure naming its output when it has not exited within `timeoutMs`. */
  exitWithin(r: RuntimeProcess, timeoutMs: number): Promise<number | null>;
  /** Waits until nothing of its process group is left (children orphaned to PID 1 included). */
  expectNoSurvivors(r: RuntimeProcess): Promise<void>;
}

export function useRuntimeRig(setup: () => Promise<RuntimeRigOptions>): RuntimeRig {
  let options: RuntimeRigOptions | undefined;
  let holders: Awaited<ReturnType<typeof holdUpstreamPorts>> | undefined;
  const running: RuntimeProcess[] = [];
  const rig = { heldUpstreamPorts: [] as number[] } as RuntimeRig;

  rig.start = (overrides = {}, o = {}) => {
    const tmp = o.tmp ?? mkdtempSync(path.join(os.tmpdir(), `mmdb-${options!.name}-tmp-`));
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      TMPDIR: tmp,
    };
    const all = { ...rig.platform.appEnv, ...rig.internal.env, ...options!.env?.(), ...overrides };
    for (const [k, v] of Object.entries(all)) if (v !== undefined) env[k] = v;
    const t0 = Date.now();
    // Its own process group, as on the platform: cleanup takes the runtime AND its children down, and what is
    // left in the group after it exited is an orphan of ours.
    const child = spawn(process.execPath, [path.join(rig.treeDir, "runtime/start.mjs")], {
      cwd: rig.treeDir,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    const raw: string[] = [];
    const lines: string[] = [];
    for (const s of [child.stdout!, child.stderr!])
      createInterface({ input: s }).on("line", (l) => {
        raw.push(l);
        try {
          const j = JSON.parse(l) as { tag?: string; msg: string; level: string };
          lines.push(`[${j.tag ?? ""}] ${j.level}: ${j.msg}`);
        } catch {
          lines.push(l);
        }
      });
    const exited = new Promise<{ code: number | null; ms: number }>((resolve) =>
      child.once("exit", (code) => resolve({ code, ms: Date.now() - t0 })),
    );
    const r = { child, raw, lines, exited, tmp };
    running.push(r);
    return r;
  };

  rig.appGet = async (pathname, init = {}) =>
    await fetch(`http://127.0.0.1:${rig.appPort}${pathname}`, {
      ...init,
      signal: AbortSignal.timeout(10_000),
    });

  rig.waitLine = async (r, pattern, timeoutMs = 60_000) =>
    await waitFor(
      () => {
        const hit = r.lines.find((l) => pattern.test(l));
        if (hit) return hit;
        if (r.child.exitCode !== null)
          throw new Error(`runtime exited ${r.child.exitCode} before ${pattern}:\n${r.lines.join("\n")}`);
        return undefined;
      },
      { timeoutMs, what: `a log line matching ${pattern}`, intervalMs: 50 },
    );

  rig.waitReady = async (r) => {
    await rig.waitLine(r, /\[start\] success: MetaMCP is ready/);
    await waitFor(
      async () =>
        (await rig.appGet("/metamcp/health").catch(() => undefined))?.status === 200 ? true : undefined,
      { timeoutMs: 20_000, what: "the runtime to serve /metamcp/health" },
    );
  };

  rig.exitWithin = async (r, timeoutMs) =>
    await waitFor(
      () => (r.child.exitCode !== null || r.child.signalCode !== null ? r.child.exitCode : undefined),
      { timeoutMs, what: "the runtime to exit", intervalMs: 50 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${r.lines.join("\n")}`);
    });

  rig.expectNoSurvivors = async (r) => {
    await waitFor(() => (groupAlive(r.child.pid!) ? undefined : true), {
      timeoutMs: 10_000,
      what: "every process of the runtime's group to be gone",
    }).catch((err: Error) => {
      throw new Error(`${err.message}: a process outlived the runtime\n${r.lines.join("\n")}`);
    });
  };

  beforeAll(async () => {
    options = await setup();
    const db = options.postgres;
    // As a `make local` beside the suite would (TEST_HOLD_UPSTREAM_PORTS=1): 12008/12009 taken; ours are free ones.
    holders = await holdUpstreamPorts();
    rig.heldUpstreamPorts = holders.held;
    rig.internal = await freeInternalPorts();
    rig.treeDir = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), `mmdb-${options.name}-tree-`)), {
      ...options.tree,
      backendPort: rig.internal.backendPort,
    });
    rig.appPort = await freePort();
    const config = loadConfig({
      cwd: rig.treeDir,
      env: { APP_NAME: "metamcp-test", LAKEBASE_DATABASE: db.database },
    });
    rig.platform = await startPlatform({
      config,
      secrets: {
        betterAuthSecret: RIG_AUTH_SECRET,
        clientId: db.role,
        clientSecret: options.clientSecret,
        pgSuperPassword: "",
        userClientId: "local-cli-test",
        userClientSecret: "user-client-secret-test",
      },
      postgres: db,
      proxyPort: await freePort(),
      appPort: rig.appPort,
      credentialTtlSeconds: options.credentialTtlSeconds,
      log: silentLogger,
      ...options.platform,
    });
  });

  afterEach(async () => {
    for (const r of running.splice(0)) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill("SIGTERM");
        const timer = setTimeout(() => r.child.kill("SIGKILL"), 15_000);
        await r.exited;
        clearTimeout(timer);
      }
      try {
        process.kill(-r.child.pid!, "SIGKILL"); // anything left in its group
      } catch {
        // the group is gone: nothing orphaned
      }
      rmSync(r.tmp, { recursive: true, force: true });
    }
  });

  afterAll(async () => {
    await rig.platform?.close();
    await options?.postgres.stop();
    await holders?.release();
    if (rig.treeDir) rmSync(rig.treeDir, { recursive: true, force: true });
  });

  return rig;
}

export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The processes `pid` started (every thread's children, as /proc lists them). */
export function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(" ").filter(Boolean).map(Number),
    );
  } catch {
    return []; // gone meanwhile
  }
}

/**
 * The TCP ports `pid` and its descendants listen on, from the kernel's own tables: each process's socket
 * inodes (/proc/<pid>/fd) matched with the listening sockets of /proc/net/tcp and tcp6 (state 0A).
 */
export function listeningPorts(pid: number): number[] {
  const pids: number[] = [];
  for (const queue = [pid]; queue.length; ) {
    const p = queue.shift()!;
    pids.push(p);
    queue.push(...childPids(p));
  }
  const inodes = new Set<string>();
  for (const p of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch {
      continue; // gone meanwhile
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${p}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue; // no IPv6 here
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === "0A" && inodes.has(f[9] ?? "")) ports.add(Number.parseInt(f[1]!.split(":").pop()!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}
