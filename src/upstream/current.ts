import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fdir } from "fdir";
import { type PrepareManifest, readManifest } from "./manifest.js";

/**
 * `<build-dir>/.metamcp-databricks/tree.json`: every file `prepare` wrote and its content hash, so a later
 * prepare can tell "this tree is exactly what I would make" without making it again. Files `build` adds
 * (node_modules, dist, .next) are not in it and do not count. No timestamps: same tree, same bytes.
 */
export const TREE_RECORD_PATH = ".metamcp-databricks/tree.json";
const OWN_DIR = ".metamcp-databricks";

interface TreeRecord {
  algorithm: "sha256";
  files: Record<string, string>;
}

function hashFile(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** Hashes every file under `treeDir` (but our own folder) and writes the record. */
export function recordTree(treeDir: string): void {
  const root = path.resolve(treeDir);
  const files: Record<string, string> = {};
  const rels = new fdir({ excludeSymlinks: true })
    .withErrors()
    .withRelativePaths()
    .exclude((name, dir) => name === OWN_DIR && path.dirname(dir) === root)
    .crawl(root)
    .sync()
    .sort();
  for (const rel of rels) files[rel] = hashFile(path.join(root, rel));
  const record: TreeRecord = { algorithm: "sha256", files };
  writeFileSync(path.join(treeDir, TREE_RECORD_PATH), `${JSON.stringify(record, null, 1)}\n`);
}

/** The first recorded file that is missing or changed, or "no record"; undefined when all are as written. */
export function treeChange(treeDir: string): string | undefined {
  let record: TreeRecord;
  try {
    record = JSON.parse(readFileSync(path.join(treeDir, TREE_RECORD_PATH), "utf8")) as TreeRecord;
  } catch {
    return `no ${TREE_RECORD_PATH}`;
  }
  for (const [rel, hash] of Object.entries(record.files ?? {})) {
    let now: string;
    try {
      now = hashFile(path.join(treeDir, rel));
    } catch {
      return `${rel} is missing`;
    }
    if (now !== hash) return `${rel} was changed`;
  }
  return undefined;
}

export interface CurrentCheckInput {
  buildDir: string;
  /** Credential-free, normalised. */
  repoUrl: string;
  /** As given; empty = the newest stable release. */
  ref: string;
  schema: string;
  toolVersion: string;
  overlayDir: string;
  /** The ids of the patches this prepare applies, in order. */
  patchIds: readonly string[];
}

export type CurrentCheck =
  /** The tree is what prepare would make, decided without the network (tags and SHAs do not move). */
  | { state: "current"; manifest: PrepareManifest }
  /** Current only if the ref (a branch, or "newest release") still resolves to `manifest.commit`. */
  | { state: "if-ref-unmoved"; manifest: PrepareManifest }
  | { state: "stale"; reason: string };

/**
 * Decides from the manifest and the tree record alone, before any git or TypeScript work, whether the build
 * dir already holds what this prepare would make. Tags are taken as immutable (as package managers do);
 * `--force` prepares again anyway.
 */
export function checkPreparedTree(input: CurrentCheckInput): CurrentCheck {
  const m = readManifest(input.buildDir);
  if (!m || typeof m.commit !== "string") return { state: "stale", reason: "no prepared tree" };
  const stale = (reason: string): CurrentCheck => ({ state: "stale", reason });
  if (m.repoUrl !== input.repoUrl) return stale(`the repository changed (was ${m.repoUrl})`);
  if (m.schema !== input.schema) return stale(`the schema changed (was ${m.schema})`);
  if (m.toolVersion !== input.toolVersion) return stale(`prepared by version ${m.toolVersion} of this tool`);
  const recorded = (m.patches ?? []).map((p) => p.id).join(", ");
  if (recorded !== input.patchIds.join(", ")) {
    return stale(
      `this copy of the tool patches differently (${input.patchIds.join(", ")}; the tree has ${recorded || "none"})`,
    );
  }
  const ref = input.ref.trim();
  if (ref !== m.requestedRef) {
    return stale(`the ref changed (was ${JSON.stringify(m.requestedRef || "newest release")})`);
  }
  const overlay = overlayChange(input.overlayDir, input.buildDir, m.overlay ?? []);
  if (overlay) return stale(overlay);
  const change = treeChange(input.buildDir);
  if (change) return stale(`the prepared tree differs (${change})`);
  const immutable =
    m.refKind === "tag" ||
    (m.refKind === "commit" && /^[0-9a-f]{4,40}$/i.test(ref) && m.commit.startsWith(ref.toLowerCase()));
  return immutable ? { state: "current", manifest: m } : { state: "if-ref-unmoved", manifest: m };
}

/** The files of our overlay/ folder (but its own README), `/`-separated and sorted; none when it is absent. */
export function overlayFiles(overlayDir: string): string[] {
  if (!existsSync(overlayDir)) return [];
  return new fdir()
    .withErrors()
    .withRelativePaths()
    .filter((rel) => rel !== "README.md")
    .crawl(overlayDir)
    .sync()
    .sort();
}

function overlayChange(overlayDir: string, treeDir: string, recorded: string[]): string | undefined {
  const now = overlayFiles(overlayDir);
  if (now.join("\n") !== [...recorded].sort().join("\n")) return "our overlay files changed";
  for (const rel of now) {
    let same = false;
    try {
      same = readFileSync(path.join(overlayDir, rel)).equals(readFileSync(path.join(treeDir, rel)));
    } catch {
      same = false;
    }
    if (!same) return `our overlay file ${rel} changed`;
  }
  return undefined;
}
