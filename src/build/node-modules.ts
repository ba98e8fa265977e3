import {
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  statSync,
} from "node:fs";
import path from "node:path";
import { fdir } from "fdir";

/**
 * pnpm lays `node_modules` out as symlinks into a virtual store (`node_modules/.pnpm/<id>/node_modules/<name>`),
 * and Next's standalone output copies that layout, symlinks included. A Databricks bundle sync silently skips
 * symlinks (docs/build.md), so the app tree needs a symlink-free layout that Node resolves the same way.
 *
 * `flattenNodeModules` rebuilds it npm-style: every package is copied once where Node's resolution finds it
 * (hoisted to the top when no other version holds the name there, nested under its dependent otherwise).
 * A package's dependencies are read from the pnpm layout itself: the other entries of the `node_modules`
 * folder that holds the package in the virtual store, plus the package's own `node_modules`.
 */
export interface FlattenOptions {
  /** `node_modules` folders whose entries are the packages the code resolves first (nearest first). */
  roots: string[];
  /** Folders whose entries are fallbacks, placed at the top only where the name is still free
   * (pnpm's hidden hoisting: `node_modules/.pnpm/node_modules`). */
  fallbacks?: string[];
  /** Only packages whose real folder is inside this one are taken (links out of the output, e.g. back into
   * the workspace, are left out and reported). */
  within: string;
  /** Destination `node_modules` folder (created). */
  dest: string;
  /** Returns a reason to leave a package (and what only it needs) out, or undefined to keep it. */
  prunePackage?: (name: string) => string | undefined;
  /** Returns a reason to not follow one dependency edge (`dependent` → `name`), or undefined to follow it.
   * A package left out this way (and what only it needs, even as a hidden-hoisting fallback) is recorded in
   * `pruned` unless another, followed edge brings it in. */
  skipDependency?: (dependent: { name: string; real: string }, name: string) => string | undefined;
  /** Where to copy a package's files from, when not its real folder (e.g. a workspace package that pnpm
   * injected without its git-ignored build output). */
  sourceFor?: (name: string, real: string) => string | undefined;
  /** Returns true to leave a file out (path relative to the package folder, `/`-separated). */
  skipFile?: (relPath: string) => boolean;
}

export interface FlattenResult {
  /** Package copies written. */
  packages: number;
  /** Of them, copies nested under a dependent because another version holds the top-level name. */
  nested: number;
  /** Package name → why it was left out. */
  pruned: Record<string, string>;
  /** Links that point out of `within` (name → target), left out. */
  outside: Record<string, string>;
}

interface Node {
  name: string;
  real: string;
  dir: string;
  parent: Node | undefined;
  children: Map<string, Node>;
}

const MAX_DEPTH = 40;

/** Package entries of a node_modules folder: name → path (scoped names expanded; dot entries skipped). */
export function listPackageEntries(nodeModules: string): Array<[string, string]> {
  if (!existsSync(nodeModules)) return [];
  const out: Array<[string, string]> = [];
  for (const entry of readdirSync(nodeModules).sort()) {
    if (entry.startsWith(".")) continue;
    const full = path.join(nodeModules, entry);
    if (entry.startsWith("@")) {
      if (!statSafe(full)?.isDirectory()) continue;
      for (const sub of readdirSync(full).sort()) {
        if (!sub.startsWith(".")) out.push([`${entry}/${sub}`, path.join(full, sub)]);
      }
    } else {
      out.push([entry, full]);
    }
  }
  return out;
}

function statSafe(p: string) {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

function realDir(p: string): string | undefined {
  try {
    const real = realpathSync(p);
    return statSync(real).isDirectory() ? real : undefined;
  } catch {
    return undefined; // dangling link: the tracer did not need it
  }
}

function dependenciesOf(name: string, real: string): Array<[string, string]> {
  const deps: Array<[string, string]> = [];
  const suffix = `${path.sep}${name.split("/").join(path.sep)}`;
  if (real.endsWith(suffix)) {
    const holder = real.slice(0, real.length - suffix.length);
    if (path.basename(holder) === "node_modules") {
      for (const [depName, depPath] of listPackageEntries(holder))
        if (depName !== name) deps.push([depName, depPath]);
    }
  }
  deps.push(...listPackageEntries(path.join(real, "node_modules")));
  return deps;
}

let linking = true;

/**
 * Hard-links a package file when source and destination share a filesystem (pnpm's store files are
 * immutable and pnpm itself hard-links them; linking 6k files is ~10x faster than copying them here),
 * copies otherwise.
 */
function placeFile(from: string, to: string): void {
  if (linking) {
    try {
      linkSync(from, to);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EXDEV" && code !== "EPERM" && code !== "EMLINK") throw err;
      linking = false;
    }
  }
  copyFileSync(from, to);
}

function copyPackage(src: string, dest: string, skipFile: (rel: string) => boolean): void {
  const root = path.resolve(src);
  // Symbolic links are listed, not followed: a link to a file is copied as that file, one to a folder left out.
  const entries = new fdir()
    .withErrors()
    .withRelativePaths()
    .withDirs()
    .exclude((name, dir) => path.dirname(dir) === root && (name === "node_modules" || name === ".bin"))
    .crawl(root)
    .sync()
    .sort();
  mkdirSync(dest, { recursive: true });
  for (const rel of entries) {
    if (rel === ".") continue;
    if (rel.endsWith("/")) {
      mkdirSync(path.join(dest, rel), { recursive: true });
      continue;
    }
    if (rel === ".bin" || rel === "node_modules") continue; // links at the top, as pnpm makes them
    const from = path.join(root, rel);
    let st = lstatSync(from);
    if (st.isSymbolicLink()) {
      const target = statSafe(from);
      if (!target?.isFile()) continue;
      st = target;
    }
    if (st.isFile() && !skipFile(rel)) {
      mkdirSync(path.dirname(path.join(dest, rel)), { recursive: true });
      placeFile(from, path.join(dest, rel));
    }
  }
}

export function flattenNodeModules(options: FlattenOptions): FlattenResult {
  const prune = options.prunePackage ?? (() => undefined);
  const skipEdge = options.skipDependency ?? (() => undefined);
  /** Edges not followed: target name → [real folder, reason]. */
  const skipped = new Map<string, { real: string; reason: string }>();
  const placedReal = new Set<string>();
  const skipFile = options.skipFile ?? (() => false);
  const root: Node = { name: "", real: "", dir: options.dest, parent: undefined, children: new Map() };
  const pruned: Record<string, string> = {};
  const outside: Record<string, string> = {};
  const within = `${realpathSync(options.within)}${path.sep}`;
  const inside = (name: string, real: string | undefined): real is string => {
    if (!real) return false;
    if (real.startsWith(within)) return true;
    outside[name] = real;
    return false;
  };
  const queue: Node[] = [];
  let nested = 0;

  const place = (parent: Node, name: string, real: string): void => {
    const dir = parent === root ? path.join(options.dest, name) : path.join(parent.dir, "node_modules", name);
    const node: Node = { name, real, dir, parent, children: new Map() };
    parent.children.set(name, node);
    placedReal.add(real);
    if (parent !== root) nested++;
    queue.push(node);
  };
  const depth = (n: Node): number => (n.parent ? 1 + depth(n.parent) : 0);

  const resolveFrom = (from: Node, name: string, real: string): void => {
    const reason = prune(name);
    if (reason) {
      pruned[name] = reason;
      return;
    }
    for (let n: Node | undefined = from; n; n = n.parent) {
      const found = n.children.get(name);
      if (found) {
        if (found.real !== real) {
          if (depth(from) >= MAX_DEPTH)
            throw new Error(`node_modules nesting deeper than ${MAX_DEPTH} at ${name}`);
          place(from, name, real);
        }
        return;
      }
    }
    place(root, name, real);
  };

  const drain = () => {
    while (queue.length > 0) {
      const node = queue.shift()!;
      for (const [depName, depPath] of dependenciesOf(node.name, node.real)) {
        const real = realDir(depPath);
        if (!inside(depName, real)) continue;
        const reason = skipEdge(node, depName);
        if (reason) skipped.set(depName, { real, reason });
        else resolveFrom(node, depName, real);
      }
    }
  };

  for (const dir of options.roots) {
    for (const [name, p] of listPackageEntries(dir)) {
      const real = realDir(p);
      if (!inside(name, real) || root.children.has(name)) continue;
      const reason = prune(name);
      if (reason) pruned[name] = reason;
      else place(root, name, real);
    }
  }
  drain();
  // What only the skipped edges lead to stays out, also as a fallback (pnpm hoists everything there).
  const unwanted = new Set<string>();
  const walk = [...skipped].map(([name, { real }]) => [name, real] as const);
  while (walk.length > 0) {
    const [name, real] = walk.pop()!;
    if (placedReal.has(real) || unwanted.has(real)) continue;
    unwanted.add(real);
    for (const [depName, depPath] of dependenciesOf(name, real)) {
      const depReal = realDir(depPath);
      if (depReal?.startsWith(within)) walk.push([depName, depReal]);
    }
  }
  for (const dir of options.fallbacks ?? []) {
    for (const [name, p] of listPackageEntries(dir)) {
      const real = realDir(p);
      if (root.children.has(name) || prune(name) || (real && unwanted.has(real))) continue;
      if (real?.startsWith(within)) place(root, name, real);
    }
    drain();
  }
  for (const [name, { real, reason }] of skipped) if (!placedReal.has(real)) pruned[name] = reason;

  let packages = 0;
  const write = (n: Node) => {
    for (const name of [...n.children.keys()].sort()) {
      const child = n.children.get(name)!;
      copyPackage(options.sourceFor?.(name, child.real) ?? child.real, child.dir, skipFile);
      packages++;
      write(child);
    }
  };
  write(root);
  return { packages, nested, pruned, outside };
}
