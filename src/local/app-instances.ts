import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { FRONTEND_BACKEND_PORT_PATCH_ID, ORIGIN_FORM_NOTE } from "../patches/instance-ports.js";
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
 * Why this app tree cannot run as several instances on one machine, or undefined when it can. A tree our
 * port patches made (backend-loopback, frontend-backend-port) takes each instance's MetaMCP ports from the
 * runtime; one prepared before them listens on upstream's fixed 12009 (and its Next build asks
 * localhost:12009), and a release whose frontend checks sessions through Next's rewrites (v2.0.0–v2.0.5,
 * baked at build) carries the patch's note in the manifest. Trees without a manifest (the test suite's) are
 * judged by their backend alone.
 */
export function instancesRefusal(appDir: string): string | undefined {
  const entry = path.join(appDir, "metamcp/apps/backend/dist/index.js");
  if (existsSync(entry) && /\.listen\(\s*12009\b/.test(readFileSync(entry, "utf8")))
    return "this MetaMCP tree's backend listens on port 12009, fixed in its code (it was prepared before this tool could move it)";
  const manifestFile = path.join(appDir, ".metamcp-databricks/manifest.json");
  if (!existsSync(manifestFile)) return undefined;
  let patches: { id?: string; note?: string }[] = [];
  try {
    patches = (JSON.parse(readFileSync(manifestFile, "utf8")) as { patches?: typeof patches }).patches ?? [];
  } catch {
    return undefined;
  }
  const frontend = patches.find((p) => p.id === FRONTEND_BACKEND_PORT_PATCH_ID);
  if (!frontend)
    return "this MetaMCP tree was prepared before this tool could move its ports (its Next build asks localhost:12009)";
  if (frontend.note === ORIGIN_FORM_NOTE)
    return "this MetaMCP release's frontend checks sessions through Next's rewrites, whose backend port (12009) is fixed when it is built";
  return undefined;
}
