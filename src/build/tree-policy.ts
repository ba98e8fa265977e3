import { createHash } from "node:crypto";
import { lstatSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fdir } from "fdir";
import { EXIT, UserError } from "../errors.js";

/** Databricks Apps refuse a deployment holding any file of 10 MB or more (docs/build.md). */
export const MAX_FILE_BYTES = 10 * 1024 * 1024;

/** Where things live in the app tree (docs/design.md "Trees on disk"). Paths relative to the app root. */
export const APP_LAYOUT = {
  packageJson: "package.json",
  appYaml: "app.yaml",
  runtime: "runtime/start.mjs",
  /** Given to MetaMCP's processes with `node --import`: their secrets arrive on a pipe (src/runtime/child-secrets.ts). */
  runtimePreload: "runtime/secrets-preload.mjs",
  /** The OpenTelemetry SDK, which start.mjs imports only when METAMCP_TELEMETRY is on (src/runtime/telemetry.ts). */
  runtimeTelemetry: "runtime/telemetry.mjs",
  metamcp: "metamcp",
  backendDir: "metamcp/apps/backend",
  backendEntry: "metamcp/apps/backend/dist/index.js",
  migrations: "metamcp/apps/backend/drizzle",
  /** Next's standalone root is merged into `metamcp/`: its traced node_modules land in `metamcp/node_modules`. */
  frontendDir: "metamcp/apps/frontend",
  frontendEntry: "metamcp/apps/frontend/server.js",
  manifest: ".metamcp-databricks/manifest.json",
} as const;

/**
 * Packages left out of the app tree's node_modules, with the reason recorded in the manifest.
 * Each entry is a known case measured on upstream; everything else is kept.
 */
export const PRUNED_PACKAGES: ReadonlyArray<{ match: (name: string) => boolean; reason: string }> = [
  {
    match: (n) => n === "sharp" || n.startsWith("@img/"),
    reason:
      "Next's optional image optimizer; its libvips binary is over 10 MB (Databricks' per-file limit). " +
      "Without sharp Next serves the original image (image-optimizer falls back on error), and MetaMCP's " +
      "only <Image> is an .ico, which Next never optimizes",
  },
  {
    match: (n) => n === "typescript" || n.startsWith("@types/"),
    reason: "compile-time only (installed as a peer of @trpc/server); nothing requires it at run time",
  },
];

export function prunePackage(name: string): string | undefined {
  return PRUNED_PACKAGES.find((p) => p.match(name))?.reason;
}

interface PackageJsonDeps {
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

/**
 * An optional peer dependency is something a package uses only when its host provides it. pnpm links one
 * whenever the WORKSPACE has it: on MetaMCP main, better-auth's optional peers `next`, `react`,
 * `react-dom` (from the frontend), `vitest` and `drizzle-kit` (dev tools) landed in the backend's
 * production closure — 446 MB, with `@next/swc-linux-x64-gnu`'s 136.5 MB binary over the 10 MB limit —
 * though the backend depends on none of them and imports only `better-auth`, `better-auth/plugins` and
 * `better-auth/adapters/drizzle`, which load none of them (only better-auth's next-js/react/test entries
 * do). So an optional peer the backend does not itself list in `dependencies` is not followed (docs/build.md).
 */
export function optionalPeersNotProvided(
  hostName: string,
  hostDependencies: Iterable<string>,
): (dependent: { name: string; real: string }, name: string) => string | undefined {
  const provided = new Set(hostDependencies);
  const manifests = new Map<string, PackageJsonDeps>();
  return (dependent, name) => {
    if (provided.has(name)) return undefined;
    let pkg = manifests.get(dependent.real);
    if (!pkg) {
      try {
        pkg = JSON.parse(readFileSync(path.join(dependent.real, "package.json"), "utf8")) as PackageJsonDeps;
      } catch {
        pkg = {};
      }
      manifests.set(dependent.real, pkg);
    }
    const optionalPeer =
      pkg.peerDependencies?.[name] !== undefined && pkg.peerDependenciesMeta?.[name]?.optional;
    const required = pkg.dependencies?.[name] !== undefined || pkg.optionalDependencies?.[name] !== undefined;
    if (!optionalPeer || required) return undefined;
    return `an optional peer of ${dependent.name} that ${hostName} does not provide (not in its dependencies); pnpm linked it because the workspace has it`;
  };
}

/** Build caches that packages sometimes carry (turbo logs, tool caches, node-gyp intermediates): never copied. */
const CACHE_DIRS = new Set([
  ".turbo",
  ".cache",
  ".git",
  ".eslintcache",
  ".pnpm-store",
  "obj.target",
  ".deps",
]);

/** Files the servers never read: source maps, type declarations, TypeScript build info, build caches. */
export function isDroppedFile(relPath: string): boolean {
  if (/\.(map|d\.ts|d\.mts|d\.cts|tsbuildinfo)$/.test(relPath)) return true;
  return relPath.split("/").some((part) => CACHE_DIRS.has(part));
}

/** Paths that must never be deployed; any of them fails the build, naming the file. */
export function forbiddenReason(relPath: string): string | undefined {
  const parts = relPath.split("/");
  const base = parts[parts.length - 1]!;
  const inNodeModules = parts.includes("node_modules");
  if (parts.includes(".git")) return "a git directory";
  if (base === ".env" || (base.startsWith(".env.") && base !== ".env.example"))
    return "an environment file; secrets reach the app through app resources, never files";
  if (base === ".npmrc" || base === ".yarnrc" || base === ".yarnrc.yml")
    return "a package-manager config (may hold tokens)";
  if (parts.some((p) => p === ".cache" || p === ".turbo" || p === ".pnpm-store" || p === ".pnpm"))
    return "a package-manager or build cache";
  if (relPath.includes(".next/cache/")) return "Next's build cache";
  if (!inNodeModules && /\.(test|spec)\.[cm]?[jt]sx?$/.test(base)) return "a test file";
  if (!inNodeModules && /\.(pem|key|p12|pfx)$/.test(base)) return "a private key or certificate bundle";
  return undefined;
}

export interface TreeStats {
  files: number;
  bytes: number;
  largest: { path: string; bytes: number };
}

export interface TreeFile {
  path: string;
  bytes: number;
}

/** Every regular file under `root`, sorted by path; throws on a symlink (bundle sync would drop it). */
export function listTree(root: string, options: { ignore?: (rel: string) => boolean } = {}): TreeFile[] {
  const abs = path.resolve(root);
  const ignore = options.ignore ?? (() => false);
  // Symbolic links are listed (not followed) so that they are refused below.
  const rels = new fdir()
    .withErrors()
    .withRelativePaths()
    .exclude((_name, dir) => ignore(path.relative(abs, dir)))
    .filter((rel) => !ignore(rel))
    .crawl(abs)
    .sync()
    .sort(byPathSegments);
  const out: TreeFile[] = [];
  for (const rel of rels) {
    const st = lstatSync(path.join(abs, rel));
    if (st.isSymbolicLink()) {
      throw new UserError(
        "app_tree_symlink",
        `the app tree holds a symbolic link, ${rel}: a Databricks bundle sync skips symlinks, so the app would miss it`,
        // Our copies are symlink-free: one left means upstream's output grew a kind we do not flatten yet.
        EXIT.drift,
      );
    }
    if (st.isFile()) out.push({ path: rel, bytes: st.size });
  }
  return out;
}

/** Folder by folder, each sorted by name: the order a sorted depth-first walk gives (the tree hash's order). */
function byPathSegments(a: string, b: string): number {
  const x = a.split("/");
  const y = b.split("/");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  }
  return x.length - y.length;
}

export function treeStats(files: TreeFile[]): TreeStats {
  let bytes = 0;
  let largest = { path: "", bytes: -1 };
  for (const f of files) {
    bytes += f.bytes;
    if (f.bytes > largest.bytes) largest = { path: f.path, bytes: f.bytes };
  }
  return { files: files.length, bytes, largest: largest.bytes < 0 ? { path: "", bytes: 0 } : largest };
}

/** Content hash of a tree: the same files with the same bytes give the same hash. */
export function treeHash(root: string, files: TreeFile[]): string {
  const h = createHash("sha256");
  for (const f of files) {
    h.update(`${f.path}\0${f.bytes}\0`);
    h.update(
      createHash("sha256")
        .update(readFileSync(path.join(root, f.path)))
        .digest("hex"),
    );
    h.update("\n");
  }
  return h.digest("hex");
}

/** Fails the build on the first forbidden file and on any file of 10 MB or more, naming it. */
export function checkTree(files: TreeFile[]): void {
  const forbidden = files.flatMap((f) => {
    const why = forbiddenReason(f.path);
    return why ? [`${f.path} (${why})`] : [];
  });
  if (forbidden.length > 0) {
    throw new UserError(
      "app_tree_forbidden_file",
      `the app tree would deploy ${forbidden.length === 1 ? "a forbidden file" : `${forbidden.length} forbidden files`}: ${forbidden.join(", ")}`,
      EXIT.input,
      "remove it from the prepared tree (or from what upstream's build copies into its output) and build again",
    );
  }
  const big = files.filter((f) => f.bytes >= MAX_FILE_BYTES).sort((a, b) => b.bytes - a.bytes);
  if (big.length > 0) {
    const list = big.map((f) => `${f.path} (${(f.bytes / 1024 / 1024).toFixed(1)} MB)`).join(", ");
    throw new UserError(
      "app_tree_file_too_large",
      `the app tree holds ${big.length === 1 ? "a file" : `${big.length} files`} of 10 MB or more, which Databricks Apps refuse to deploy: ${list}`,
      EXIT.input,
      "drop it from the output or add a measured entry to PRUNED_PACKAGES in src/build/tree-policy.ts",
    );
  }
}

/** The Node.js major version the Databricks Apps runtime runs (docs/build.md): native addons must match it. */
export const APPS_NODE_MAJOR = 22;

/**
 * What runtime/start.mjs loads from the backend at run time rather than bundling (docs/runtime.md): the
 * migrator of upstream's own drizzle-orm, so the app's migrations run with the version that wrote them.
 */
export const RUNTIME_LOADS_FROM_BACKEND = ["drizzle-orm/node-postgres", "drizzle-orm/node-postgres/migrator"];

/** Fails the build, not the app's first start, when the backend no longer ships what the runtime loads. */
export function checkRuntimeLoads(appRoot: string): void {
  const fromBackend = createRequire(path.join(appRoot, APP_LAYOUT.backendDir, "package.json"));
  for (const id of RUNTIME_LOADS_FROM_BACKEND) {
    try {
      fromBackend.resolve(id);
    } catch {
      throw new UserError(
        "backend_lacks_runtime_import",
        `the app tree's backend does not provide ${id}, which runtime/start.mjs loads from it to run MetaMCP's migrations`,
        // Upstream's backend has depended on drizzle-orm in every release: its absence is upstream drift.
        EXIT.drift,
        "check the release's apps/backend/package.json dependencies; if drizzle-orm moved, the runtime must bundle it again (src/runtime/database.ts)",
      );
    }
  }
}
