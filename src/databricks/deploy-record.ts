import { createHash } from "node:crypto";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";

/**
 * Which app tree the app runs, so app-deploy does not deploy the same tree twice: `bundle deploy` with
 * `lifecycle.started: true` already deploys code when it creates or changes the app, and a second
 * deployment right after it would only restart the app. Kept beside databricks.yml (outside the synced
 * app tree), one file per target.
 */
export interface DeployRecord {
  appName: string;
  /** {@link treeFingerprint} of the app tree that deployment shipped. */
  fingerprint: string;
  deploymentId: string;
}

/**
 * A fingerprint of the app tree as it is on disk: every path with its size and modification time (and
 * a link's target). A rebuild rewrites files, so any change moves it; reading no file content keeps it
 * fast on a tree of thousands of files.
 */
export function treeFingerprint(root: string): string {
  const h = createHash("sha256");
  const walk = (rel: string) => {
    const dir = path.join(root, rel);
    for (const name of readdirSync(dir).sort()) {
      const relPath = rel ? `${rel}/${name}` : name;
      const st = lstatSync(path.join(root, relPath));
      if (st.isSymbolicLink()) h.update(`l ${relPath} ${readlinkSync(path.join(root, relPath))}\n`);
      else if (st.isDirectory()) walk(relPath);
      else h.update(`f ${relPath} ${st.size} ${Math.trunc(st.mtimeMs)}\n`);
    }
  };
  walk("");
  return h.digest("hex");
}

function recordFile(bundleDir: string, target: string): string {
  return path.join(bundleDir, ".metamcp-databricks", `deployed-${target}.json`);
}

export function readDeployRecord(bundleDir: string, target: string): DeployRecord | undefined {
  const file = recordFile(bundleDir, target);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, "utf8")) as DeployRecord;
  } catch {
    return undefined;
  }
}

export function writeDeployRecord(bundleDir: string, target: string, record: DeployRecord): void {
  const file = recordFile(bundleDir, target);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
}

export function clearDeployRecord(bundleDir: string, target: string): void {
  rmSync(recordFile(bundleDir, target), { force: true });
}
