import { readFileSync } from "node:fs";
import path from "node:path";
import type { PatchRecord } from "../patches/patch.js";
import type { RefKind } from "./refs.js";

export type { PatchFileRecord, PatchRecord } from "../patches/patch.js";

/** Where `prepare` records what it built, relative to the build dir. */
export const MANIFEST_PATH = ".metamcp-databricks/manifest.json";

/**
 * `<build-dir>/.metamcp-databricks/manifest.json`, written by `prepare`. Reproducible: no timestamps,
 * so the same inputs give a byte-identical file. Later steps add their own top-level section (e.g.
 * `build`) to their copy; `prepare` owns every field below.
 */
export interface PrepareManifest {
  repoUrl: string;
  /** As given (`--ref` / `METAMCP_REF`); empty when the newest stable release was asked for. */
  requestedRef: string;
  /** The tag or branch it resolved to; the full SHA for a commit no tag points at. */
  resolvedRef: string;
  refKind: RefKind;
  /** Full commit SHA of the upstream tree. */
  commit: string;
  /** PostgreSQL schema every table, enum and the migrations journal were moved to. */
  schema: string;
  toolVersion: string;
  /** Files our overlay/ folder added or replaced. */
  overlay: string[];
  /** In the order applied. */
  patches: PatchRecord[];
}

export function renderManifest(manifest: PrepareManifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/** The manifest of a prepared tree, or undefined when there is none (or it is unreadable). */
export function readManifest(buildDir: string): PrepareManifest | undefined {
  try {
    return JSON.parse(readFileSync(path.join(buildDir, MANIFEST_PATH), "utf8")) as PrepareManifest;
  } catch {
    return undefined;
  }
}
