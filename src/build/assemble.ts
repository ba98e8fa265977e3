import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { fdir } from "fdir";
import { parse as parseYaml } from "yaml";
import type { Logger } from "../log/logger.js";
import type { PrepareManifest } from "../upstream/manifest.js";
import { flattenNodeModules } from "./node-modules.js";
import {
  APP_LAYOUT,
  APPS_NODE_MAJOR,
  checkRuntimeLoads,
  checkTree,
  isDroppedFile,
  listTree,
  optionalPeersNotProvided,
  prunePackage,
  type TreeStats,
  treeHash,
  treeStats,
} from "./tree-policy.js";

/** The section `build` adds to the app tree's copy of the manifest. No timestamps: same inputs, same file. */
export interface BuildManifestSection {
  inputHash: string;
  compileHash: string;
  pnpm: string;
  /** The tree as deployed, without the manifest itself and app.yaml. */
  tree: TreeStats & { sha256: string };
  layout: typeof APP_LAYOUT;
  /** Package → why it was left out. */
  pruned: Record<string, string>;
}

export interface AssembleOptions {
  buildDir: string;
  appDir: string;
  /** `pnpm deploy --prod` output for the backend (its node_modules are flattened into the tree). */
  backendProdDir: string;
  runtime: Buffer;
  /** runtime/secrets-preload.mjs (src/runtime/secrets-preload.ts). */
  runtimePreload: Buffer;
  /** runtime/telemetry.mjs (src/runtime/telemetry-export.ts). */
  runtimeTelemetry: Buffer;
  toolVersion: string;
  nodeVersion?: string;
  /** The prepared manifest; the app tree's copy gets the `build` section. */
  manifest: PrepareManifest;
  build: Pick<BuildManifestSection, "inputHash" | "compileHash" | "pnpm">;
  log: Logger;
}

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function copyFiltered(src: string, dest: string, skip: (rel: string) => boolean): void {
  const root = path.resolve(src);
  // Folders (empty ones too) and regular files; symbolic links are left out.
  const entries = new fdir({ excludeSymlinks: true })
    .withErrors()
    .withRelativePaths()
    .withDirs()
    .exclude((_name, dir) => skip(path.relative(root, dir)))
    .filter((rel, isDir) => isDir || !skip(rel))
    .crawl(root)
    .sync()
    .sort();
  mkdirSync(dest, { recursive: true });
  for (const rel of entries) {
    if (rel === ".") continue;
    if (rel.endsWith("/")) mkdirSync(path.join(dest, rel), { recursive: true });
    else {
      mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
      copyFileSync(path.join(root, rel), path.join(dest, rel));
    }
  }
}

/** Workspace package name → folder, from pnpm-workspace.yaml's `dir/*` globs. */
export function workspacePackages(buildDir: string): Map<string, string> {
  const out = new Map<string, string>();
  const file = path.join(buildDir, "pnpm-workspace.yaml");
  const globs = existsSync(file)
    ? ((parseYaml(readFileSync(file, "utf8")) as { packages?: string[] } | null)?.packages ?? [])
    : [];
  for (const glob of globs) {
    const base = glob.replace(/\/\*+$/, "");
    let dirs: string[] = [path.join(buildDir, base)];
    if (glob.endsWith("*")) {
      const parent = path.join(buildDir, base);
      dirs = existsSync(parent) ? readdirSync(parent).map((d) => path.join(parent, d)) : [];
    }
    for (const dir of dirs) {
      const pkg = readJson<{ name?: string }>(path.join(dir, "package.json"));
      if (pkg?.name) out.set(pkg.name, dir);
    }
  }
  return out;
}

/** The minimal root package.json: no build script, no dependencies (docs/decisions.md). */
export function appPackageJson(toolVersion: string): string {
  const pkg = {
    name: "metamcp-databricks-app",
    version: toolVersion,
    private: true,
    description: "MetaMCP, built ahead of time by metamcp-databricks: nothing to install or build here",
    engines: { node: ">=20" },
    scripts: { start: `node ${APP_LAYOUT.runtime}` },
    dependencies: {},
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

/**
 * Assembles the app tree in a sibling staging folder — backend dist, migrations and production deps; Next's
 * standalone server with .next/static and public/; our runtime; the minimal package.json; the manifest —
 * checks it (10 MB, forbidden files, symlinks), then swaps it in whole. A failure leaves the previous tree.
 */
export function assembleAppTree(options: AssembleOptions): {
  tree: TreeStats;
  pruned: Record<string, string>;
} {
  const { buildDir, appDir, log } = options;
  removeLeftovers(appDir);
  const staging = `${appDir}.staging-${process.pid}`;
  mkdirSync(staging, { recursive: true });
  try {
    const at = (rel: string) => path.join(staging, rel);
    const pruned: Record<string, string> = {};
    const outside: Record<string, string> = {};

    // Backend: package.json (its "type": "module" makes dist/*.js ESM), dist, migrations, production deps.
    const backendSrc = path.join(buildDir, "apps/backend");
    mkdirSync(at(APP_LAYOUT.backendDir), { recursive: true });
    copyFileSync(path.join(backendSrc, "package.json"), at(`${APP_LAYOUT.backendDir}/package.json`));
    copyFiltered(path.join(backendSrc, "dist"), at(`${APP_LAYOUT.backendDir}/dist`), isDroppedFile);
    if (existsSync(path.join(backendSrc, "drizzle"))) {
      copyFiltered(path.join(backendSrc, "drizzle"), at(APP_LAYOUT.migrations), () => false);
    }
    const workspace = workspacePackages(buildDir);
    const prod = options.backendProdDir;
    const backendPackage = readJson<{ dependencies?: Record<string, string> }>(
      path.join(backendSrc, "package.json"),
    );
    const backendModules = flattenNodeModules({
      roots: [path.join(prod, "node_modules")],
      fallbacks: [path.join(prod, "node_modules/.pnpm/node_modules")],
      within: prod,
      // pnpm deploy packs workspace packages like `npm pack`, honouring their .gitignore: upstream's
      // packages/zod-types ignores dist/, so its injected copy lacks the build output. Take the built folder.
      sourceFor: (name, real) => (real.includes("@file+") ? workspace.get(name) : undefined),
      dest: at(`${APP_LAYOUT.backendDir}/node_modules`),
      prunePackage,
      skipDependency: optionalPeersNotProvided(
        "the backend",
        Object.keys(backendPackage?.dependencies ?? {}),
      ),
      skipFile: isDroppedFile,
    });
    Object.assign(pruned, backendModules.pruned);
    Object.assign(outside, backendModules.outside);

    // Frontend: Next's standalone root merged into metamcp/, static assets and public/ beside server.js.
    const standalone = path.join(buildDir, "apps/frontend/.next/standalone");
    copyFiltered(
      standalone,
      at(APP_LAYOUT.metamcp),
      (rel) => rel.split("/").includes("node_modules") || isDroppedFile(rel),
    );
    const frontendModules = flattenNodeModules({
      roots: [path.join(standalone, "apps/frontend/node_modules"), path.join(standalone, "node_modules")],
      fallbacks: [path.join(standalone, "node_modules/.pnpm/node_modules")],
      within: standalone,
      dest: at(`${APP_LAYOUT.metamcp}/node_modules`),
      prunePackage,
      skipFile: isDroppedFile,
    });
    Object.assign(pruned, frontendModules.pruned);
    Object.assign(outside, frontendModules.outside);
    const nextDir = path.join(buildDir, "apps/frontend/.next");
    if (existsSync(path.join(nextDir, "static"))) {
      copyFiltered(path.join(nextDir, "static"), at(`${APP_LAYOUT.frontendDir}/.next/static`), isDroppedFile);
    }
    const publicDir = path.join(buildDir, "apps/frontend/public");
    if (existsSync(publicDir)) copyFiltered(publicDir, at(`${APP_LAYOUT.frontendDir}/public`), () => false);

    // Ours: the runtime bundle and the minimal root package.json.
    mkdirSync(path.dirname(at(APP_LAYOUT.runtime)), { recursive: true });
    writeFileSync(at(APP_LAYOUT.runtime), options.runtime);
    writeFileSync(at(APP_LAYOUT.runtimePreload), options.runtimePreload);
    writeFileSync(at(APP_LAYOUT.runtimeTelemetry), options.runtimeTelemetry);
    writeFileSync(at(APP_LAYOUT.packageJson), appPackageJson(options.toolVersion));

    for (const [name, reason] of Object.entries(pruned).sort()) log.info(`left out ${name}: ${reason}`);
    for (const [name, target] of Object.entries(outside).sort()) {
      log.warn(`left out ${name}: it links out of the build output (${target})`);
    }

    // Guards and stats over everything but the manifest, which records them.
    const files = listTree(staging);
    checkTree(files);
    checkRuntimeLoads(staging);
    warnNativeAddons(
      files.map((f) => f.path),
      options.nodeVersion,
      log,
    );
    const tree = treeStats(files);
    const section: BuildManifestSection = {
      ...options.build,
      tree: { ...tree, sha256: treeHash(staging, files) },
      layout: APP_LAYOUT,
      pruned: Object.fromEntries(Object.entries(pruned).sort()),
    };
    mkdirSync(path.dirname(at(APP_LAYOUT.manifest)), { recursive: true });
    writeFileSync(
      at(APP_LAYOUT.manifest),
      `${JSON.stringify({ ...options.manifest, build: section }, null, 2)}\n`,
    );

    // Keep the app.yaml that render/deploy wrote into the previous tree, then swap.
    const oldAppYaml = path.join(appDir, APP_LAYOUT.appYaml);
    if (existsSync(oldAppYaml)) cpSync(oldAppYaml, at(APP_LAYOUT.appYaml));
    const old = `${appDir}.old-${process.pid}`;
    if (existsSync(appDir)) renameSync(appDir, old);
    renameSync(staging, appDir);
    rmSync(old, { recursive: true, force: true });
    return { tree, pruned: section.pruned };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Staging and old trees an interrupted build (Ctrl-C) left beside the app dir. */
function removeLeftovers(appDir: string): void {
  const parent = path.dirname(appDir);
  if (!existsSync(parent)) return;
  const prefix = `${path.basename(appDir)}.`;
  for (const entry of readdirSync(parent)) {
    if (entry.startsWith(`${prefix}staging-`) || entry.startsWith(`${prefix}old-`)) {
      rmSync(path.join(parent, entry), { recursive: true, force: true });
    }
  }
}

/** Native addons are compiled for the building Node; the app runs Node 22 (upstream loads its addons optionally). */
function warnNativeAddons(paths: string[], nodeVersion: string | undefined, log: Logger): void {
  const addons = paths.filter((p) => p.endsWith(".node"));
  const major = Number(nodeVersion?.split(".")[0]);
  if (addons.length === 0 || !major || major === APPS_NODE_MAJOR) return;
  log.warn(
    `${addons.length} native addon(s) were compiled for Node ${major} but the app runs Node ${APPS_NODE_MAJOR} ` +
      `(${addons.join(", ")}); build with Node ${APPS_NODE_MAJOR} to ship working ones`,
  );
}
