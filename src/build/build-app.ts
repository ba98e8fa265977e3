import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Config } from "../config/load.js";
import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { OVERLAY_PATH, toolRoot } from "../upstream/locations.js";
import { MANIFEST_PATH, type PrepareManifest, readManifest } from "../upstream/manifest.js";
import { TOOL_VERSION } from "../version.js";
import { assembleAppTree, type BuildManifestSection } from "./assemble.js";
import { appInputHash, compileHash, fileFingerprint } from "./inputs.js";
import { RUNTIME_BUNDLE_PATH } from "./locations.js";
import { runStep, type StepSpec } from "./steps.js";
import { pnpmCommand, readPinnedPackageManager } from "./toolchain.js";
import { APP_LAYOUT, listTree, type TreeStats, treeStats } from "./tree-policy.js";

export interface BuildAppOptions {
  /** The prepared upstream tree (`prepare`'s output). */
  buildDir: string;
  /** Where the deployable app tree is assembled (replaced as a whole at the end). */
  appDir: string;
  /**
   * Our runtime bundle to ship as runtime/start.mjs; its secrets preload (secrets-preload.mjs) and its
   * OpenTelemetry module (telemetry.mjs) lie beside it.
   */
  runtimeBundle: string;
  /** Our overlay folder (an input of the hash). */
  overlayDir: string;
  toolVersion: string;
  /** Hash of this tool's own code (see appInputHash); empty when unknown. */
  toolFingerprint?: string;
  /** Node.js version running the build (native addons are compiled for it); the CLI passes process.versions.node. */
  nodeVersion?: string;
  /** Environment for the pnpm steps (the CLI passes process.env). */
  env: Record<string, string | undefined>;
  force?: boolean;
  log: Logger;
}

export interface BuildStepReport {
  name: string;
  durationMs: number;
  skipped?: string;
}

export interface BuildAppResult {
  status: "built" | "up-to-date";
  buildDir: string;
  appDir: string;
  inputHash: string;
  pnpm: string;
  steps: BuildStepReport[];
  tree: TreeStats;
  pruned: Record<string, string>;
  durationMs: number;
}

const STATE_FILE = ".metamcp-databricks/build-state.json";
const BACKEND_PROD_DIR = ".metamcp-databricks/backend-prod";

interface BuildState {
  compileHash?: string;
  backendProdHash?: string;
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function writeJson(file: string, value: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

function readPreparedManifest(buildDir: string): PrepareManifest {
  const manifest = readManifest(buildDir);
  if (!manifest || typeof manifest.commit !== "string") {
    throw new UserError(
      "not_prepared",
      `no prepared MetaMCP tree at ${buildDir} (missing or unreadable ${MANIFEST_PATH})`,
      EXIT.input,
      "run `metamcp-databricks prepare` first (or pass --build-dir)",
    );
  }
  return manifest;
}

function readRuntimeBundle(file: string): Buffer {
  if (!existsSync(file)) {
    throw new UserError(
      "runtime_bundle_missing",
      `our runtime bundle ${file} does not exist, so the app would have nothing to start`,
      EXIT.input,
      "run `npm run build` in the metamcp-databricks checkout (it emits the bundle), then build again",
    );
  }
  return readFileSync(file);
}

/** The app tree's files as the manifest counts them: without the manifest itself and the app.yaml that
 * `render`/deploy writes beside them. */
function listAppTree(appDir: string) {
  return listTree(appDir, { ignore: (rel) => rel === APP_LAYOUT.appYaml || rel === APP_LAYOUT.manifest });
}

function upToDate(appDir: string, inputHash: string): BuildManifestSection | undefined {
  const manifest = readJson<{ build?: BuildManifestSection }>(path.join(appDir, APP_LAYOUT.manifest));
  const build = manifest?.build;
  if (!build || build.inputHash !== inputHash) return undefined;
  try {
    const stats = treeStats(listAppTree(appDir));
    if (stats.files !== build.tree.files || stats.bytes !== build.tree.bytes) return undefined;
  } catch {
    return undefined;
  }
  return build;
}

function requirePath(file: string, what: string): void {
  if (!existsSync(file)) {
    throw new UserError(
      "build_output_missing",
      `upstream's build did not produce ${what} (${file})`,
      EXIT.drift,
      'upstream\'s layout moved: check its build scripts (backend tsup, Next `output: "standalone"`)',
    );
  }
}

/**
 * `build`: install and build the prepared MetaMCP with its own pnpm, then assemble the lean, symlink-free app
 * tree that starts with `node` alone. A no-op when nothing changed; a runtime-only change re-assembles without
 * rebuilding upstream.
 */
export async function buildApp(options: BuildAppOptions): Promise<BuildAppResult> {
  const started = performance.now();
  const { buildDir, appDir, log } = options;
  const manifest = readPreparedManifest(buildDir);
  const pm = readPinnedPackageManager(buildDir);
  const runtime = readRuntimeBundle(options.runtimeBundle);
  const runtimePreload = readRuntimeBundle(
    path.join(path.dirname(options.runtimeBundle), path.basename(APP_LAYOUT.runtimePreload)),
  );
  const runtimeTelemetry = readRuntimeBundle(
    path.join(path.dirname(options.runtimeBundle), path.basename(APP_LAYOUT.runtimeTelemetry)),
  );
  const lockfilePath = path.join(buildDir, "pnpm-lock.yaml");
  if (!existsSync(lockfilePath)) {
    throw new UserError(
      "lockfile_missing",
      `${lockfilePath} is missing: upstream's install cannot be reproduced without it`,
      EXIT.drift,
    );
  }
  const compile = compileHash({
    manifest,
    lockfile: readFileSync(lockfilePath),
    overlayDir: options.overlayDir,
    toolVersion: options.toolVersion,
    pnpmVersion: pm.version,
  });
  const inputHash = appInputHash(
    compile,
    Buffer.concat([
      runtime,
      Buffer.from("\0preload\0"),
      runtimePreload,
      Buffer.from("\0telemetry\0"),
      runtimeTelemetry,
    ]),
    options.toolFingerprint,
  );
  const steps: BuildStepReport[] = [];

  if (!options.force) {
    const current = upToDate(appDir, inputHash);
    if (current) {
      log.info(`app tree ${appDir} is up to date (inputs ${inputHash.slice(0, 12)}); --force rebuilds`);
      return {
        status: "up-to-date",
        buildDir,
        appDir,
        inputHash,
        pnpm: pm.version,
        steps,
        tree: { files: current.tree.files, bytes: current.tree.bytes, largest: current.tree.largest },
        pruned: current.pruned,
        durationMs: Math.round(performance.now() - started),
      };
    }
  }

  const env = {
    ...options.env,
    CI: "true",
    NEXT_TELEMETRY_DISABLED: "1",
    TURBO_TELEMETRY_DISABLED: "1",
    DO_NOT_TRACK: "1",
    // --force means a real rebuild: turbo would otherwise replay its local cache (.turbo/ in the build dir).
    ...(options.force ? { TURBO_FORCE: "true" } : {}),
    npm_config_yes: "true",
  };
  const pnpm = (name: string, args: string[], cwd = buildDir): StepSpec => ({
    name,
    ...pnpmCommand(pm, args),
    cwd,
    env,
  });

  const statePath = path.join(buildDir, STATE_FILE);
  const state = readJson<BuildState>(statePath) ?? {};
  const backendEntry = path.join(buildDir, "apps/backend/dist/index.js");
  const standalone = path.join(buildDir, "apps/frontend/.next/standalone");
  const outputsThere =
    existsSync(backendEntry) &&
    existsSync(path.join(standalone, "apps/frontend/server.js")) &&
    existsSync(path.join(buildDir, "node_modules"));
  if (!options.force && state.compileHash === compile && outputsThere) {
    steps.push({ name: "install", durationMs: 0, skipped: "inputs unchanged" });
    steps.push({ name: "build", durationMs: 0, skipped: "inputs unchanged" });
    log.info("upstream's install and build are up to date; re-assembling the app tree only");
  } else {
    log.info(
      `building MetaMCP ${manifest.resolvedRef || manifest.commit.slice(0, 12)} with pnpm ${pm.version} (from the npm registry)`,
    );
    writeJson(statePath, {});
    rmSync(path.join(buildDir, BACKEND_PROD_DIR), { recursive: true, force: true });
    steps.push(await runStep(pnpm("install", ["install", "--frozen-lockfile"]), log));
    steps.push(await runStep(pnpm("build", ["run", "build"]), log));
    writeJson(statePath, { compileHash: compile });
    state.compileHash = compile;
    state.backendProdHash = undefined;
  }
  requirePath(backendEntry, "the backend bundle apps/backend/dist/index.js");
  requirePath(path.join(standalone, "apps/frontend/server.js"), "Next's standalone server");

  // The backend's production node_modules: upstream's tsup keeps its dependencies external.
  const backendPkg = readJson<{ name?: string }>(path.join(buildDir, "apps/backend/package.json"));
  const backendName = backendPkg?.name ?? "backend";
  const prodDir = path.join(buildDir, BACKEND_PROD_DIR);
  if (!options.force && state.backendProdHash === compile && existsSync(path.join(prodDir, "node_modules"))) {
    steps.push({ name: "backend-deps", durationMs: 0, skipped: "inputs unchanged" });
  } else {
    rmSync(prodDir, { recursive: true, force: true });
    steps.push(
      await runStep(
        {
          ...pnpm("backend-deps", ["--filter", backendName, "deploy", "--prod", prodDir]),
          // pnpm 9's `deploy --prod` still tries to link the commands of the backend's dev-only tools
          // (esbuild, vite, acorn, jiti on v2.4.22), which it rightly did not install.
          expected: {
            pattern: /WARN\s+Failed to create bin at /,
            explain: (n) =>
              `pnpm could not link ${n} command(s) of dev-only tools it left out (its "Failed to create bin" warnings): expected, the app runs none of them`,
          },
        },
        log,
      ),
    );
    writeJson(statePath, { compileHash: compile, backendProdHash: compile });
  }

  const assembleStart = performance.now();
  const assembled = assembleAppTree({
    buildDir,
    appDir,
    backendProdDir: prodDir,
    runtime,
    runtimePreload,
    runtimeTelemetry,
    toolVersion: options.toolVersion,
    nodeVersion: options.nodeVersion,
    manifest,
    build: { inputHash, compileHash: compile, pnpm: pm.version },
    log,
  });
  steps.push({ name: "assemble", durationMs: Math.round(performance.now() - assembleStart) });
  return {
    status: "built",
    buildDir,
    appDir,
    inputHash,
    pnpm: pm.version,
    steps,
    tree: assembled.tree,
    pruned: assembled.pruned,
    durationMs: Math.round(performance.now() - started),
  };
}

/** `build` as the CLI and `local` run it: every input from the one configuration. */
export async function buildFromConfig(
  config: Config,
  log: Logger,
  options: { force?: boolean; runtimeBundle?: string } = {},
): Promise<BuildAppResult> {
  const root = toolRoot();
  return await buildApp({
    buildDir: config.buildDir,
    appDir: config.appDir,
    runtimeBundle: options.runtimeBundle ?? path.join(root, RUNTIME_BUNDLE_PATH),
    overlayDir: path.join(root, OVERLAY_PATH),
    toolVersion: TOOL_VERSION,
    // This module is bundled into the CLI: its own file stands for the tool's code.
    toolFingerprint: fileFingerprint(fileURLToPath(import.meta.url)),
    nodeVersion: process.versions.node,
    env: process.env,
    force: options.force ?? false,
    log,
  });
}
