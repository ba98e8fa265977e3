import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { waitFor } from "../retry.js";
import { type AppProcess, type AppProcessExit, spawnAppProcess } from "./app-process.js";
import type { InstanceRotation } from "./platform/apps-proxy-routing.js";

/**
 * The app's instances under `local up --instances N` (docs/scaling.md): each its own runtime with its own
 * MetaMCP (backend and frontend ports of its own), all on the one PostgreSQL, behind the stand-in Apps
 * proxy's rotation. A rolling restart replaces them one at a time as the platform's rolling deploy does:
 * out of rotation, stopped, started again, healthy, back in.
 */
export interface AppInstanceSpec {
  /** Its DATABRICKS_APP_PORT. */
  appPort: number;
  env: Record<string, string>;
}

export interface InstanceExit extends AppProcessExit {
  /** 0-based. */
  instance: number;
}

export class AppInstances {
  private readonly procs: AppProcess[] = [];
  /** Processes a rolling restart is replacing: their exit is asked for. */
  private readonly retired = new WeakSet<AppProcess>();
  private stopping = false;
  private resolveExit: (e: InstanceExit) => void = () => {};
  /** The first exit nobody asked for (a crash): the stack stops on it. */
  readonly exited = new Promise<InstanceExit>((r) => {
    this.resolveExit = r;
  });

  constructor(
    private readonly options: {
      command: string[];
      cwd: string;
      specs: AppInstanceSpec[];
      rotation: InstanceRotation;
      onLine: (instance: number, source: "stdout" | "stderr", line: string) => void;
    },
  ) {}

  get count(): number {
    return this.options.specs.length;
  }

  start(): void {
    for (let i = 0; i < this.options.specs.length; i++) this.spawn(i);
    this.options.rotation.ports = this.options.specs.map((s) => s.appPort);
  }

  pids(): number[] {
    return this.procs.map((p) => p.pid);
  }

  ports(): number[] {
    return this.options.specs.map((s) => s.appPort);
  }

  private spawn(i: number): void {
    const spec = this.options.specs[i]!;
    const proc = spawnAppProcess({
      command: this.options.command,
      cwd: this.options.cwd,
      env: spec.env,
      onLine: (source, line) => this.options.onLine(i, source, line),
    });
    this.procs[i] = proc;
    void proc.exited.then((e) => {
      if (!this.stopping && !this.retired.has(proc)) this.resolveExit({ ...e, instance: i });
    });
  }

  async stop(graceMs = 15_000): Promise<void> {
    this.stopping = true;
    await Promise.all(this.procs.map((p) => p.stop(graceMs)));
  }

  /** One at a time: out of the proxy's rotation, stopped, started again, healthy, back in rotation. */
  async rollingRestart(options: { healthTimeoutMs: number; log: (message: string) => void }): Promise<void> {
    const { rotation, specs } = this.options;
    for (let i = 0; i < specs.length; i++) {
      const port = specs[i]!.appPort;
      rotation.ports = rotation.ports.filter((p) => p !== port);
      options.log(`rolling restart: instance ${i + 1} of ${specs.length} out of rotation, replacing it`);
      const old = this.procs[i]!;
      this.retired.add(old);
      await old.stop(15_000);
      this.spawn(i);
      await waitFor(
        async () => {
          const res = await fetch(`http://127.0.0.1:${port}/metamcp/health`, {
            signal: AbortSignal.timeout(5000),
          }).catch(() => undefined);
          return res?.status === 200 ? true : undefined;
        },
        { timeoutMs: options.healthTimeoutMs, what: `instance ${i + 1} to be healthy again` },
      );
      // Back in its place: the proxy's per-person hash gives people back to the instance they had.
      rotation.ports = specs.map((s) => s.appPort).filter((p) => p === port || rotation.ports.includes(p));
      options.log(`rolling restart: instance ${i + 1} of ${specs.length} healthy, back in rotation`);
    }
  }
}

/**
 * Whether the app tree's MetaMCP backend listens on a port fixed in its code (upstream's `app.listen(12009,
 * …)`, every release): then a second instance cannot run on this machine (its backend would find 12009
 * taken, and Next's build has `localhost:12009` baked in). The test suite's tree listens on PORT.
 */
export function backendPortIsFixed(appDir: string): boolean {
  const entry = path.join(appDir, "metamcp/apps/backend/dist/index.js");
  if (!existsSync(entry)) return false;
  return /\.listen\(\s*12009\b/.test(readFileSync(entry, "utf8"));
}
