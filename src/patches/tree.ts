import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

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
    const base = path.join(this.root, normalize(dir));
    if (!existsSync(base)) return [];
    const out: string[] = [];
    const walk = (abs: string, rel: string) => {
      for (const entry of readdirSync(abs, { withFileTypes: true })) {
        if (SKIPPED_DIRS.has(entry.name)) continue;
        const childRel = rel ? `${rel}/${entry.name}` : entry.name;
        if (entry.isDirectory()) walk(path.join(abs, entry.name), childRel);
        else if (entry.isFile()) out.push(childRel);
      }
    };
    walk(base, normalize(dir));
    return out.sort();
  }
}
