import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fdir } from "fdir";

/**
 * The view of a source tree a patch works on: `/`-separated paths relative to the tree root. Two
 * implementations: in memory (unit tests, no disk) and on disk (prepare's temp dir).
 */
export interface FileTree {
  /** The file's text, or undefined when it does not exist. */
  read(file: string): string | undefined;
  write(file: string, content: string): void;
  /** Files (not directories) under `dir`, recursively, sorted; `node_modules` and `.git` are skipped. */
  list(dir?: string): string[];
}

const SKIPPED_DIRS = new Set(["node_modules", ".git"]);

function normalize(file: string): string {
  const p = path.posix
    .normalize(file.replace(/\\/g, "/"))
    .replace(/^\.\/?/, "")
    .replace(/\/$/, "");
  if (p.startsWith("../") || p === ".." || path.posix.isAbsolute(p))
    throw new Error(`path outside tree: ${file}`);
  return p;
}

export class MemoryTree implements FileTree {
  private readonly files = new Map<string, string>();

  constructor(files: Record<string, string> = {}) {
    for (const [name, content] of Object.entries(files)) this.files.set(normalize(name), content);
  }

  read(file: string): string | undefined {
    return this.files.get(normalize(file));
  }

  write(file: string, content: string): void {
    this.files.set(normalize(file), content);
  }

  list(dir = ""): string[] {
    const prefix = dir ? `${normalize(dir)}/` : "";
    return [...this.files.keys()]
      .filter((f) => f.startsWith(prefix) && !f.split("/").some((part) => SKIPPED_DIRS.has(part)))
      .sort();
  }

  /** Every file and its content, for assertions. */
  toObject(): Record<string, string> {
    return Object.fromEntries([...this.files.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
}

export class DiskTree implements FileTree {
  constructor(readonly root: string) {}

  read(file: string): string | undefined {
    const full = path.join(this.root, normalize(file));
    try {
      return readFileSync(full, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
  }

  write(file: string, content: string): void {
    const full = path.join(this.root, normalize(file));
    mkdirSync(path.dirname(full), { recursive: true });
    writeFileSync(full, content);
  }

  list(dir = ""): string[] {
    const rel = normalize(dir);
    // Regular files only (no symbolic links), none under a skipped folder.
    const base = path.join(this.root, rel);
    if (!existsSync(base)) return [];
    return new fdir({ excludeSymlinks: true })
      .withErrors()
      .withRelativePaths()
      .exclude((name) => SKIPPED_DIRS.has(name))
      .filter((file) => !SKIPPED_DIRS.has(path.posix.basename(file)))
      .crawl(base)
      .sync()
      .map((file) => (rel ? `${rel}/${file}` : file))
      .sort();
  }
}
