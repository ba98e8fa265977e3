import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import semver from "semver";
import { MIN_CLI_VERSION } from "../../src/databricks/cli-version.js";
import { PROJECT_ROOT } from "./cli.js";

/**
 * The Databricks CLI's JSON schema for databricks.yml, for the render tests to validate against. The schema
 * is the CLI's file (Databricks License): the repository never holds a copy, so it comes from one of
 *   1. ../shared/databricks/bundle-jsonschema.json beside the clone (CI has it; pinned to one CLI commit);
 *   2. `databricks bundle schema` of an installed CLI (it prints the schema embedded in the binary, offline,
 *      with no profile or bundle), the CLI every user who deploys has installed: $DATABRICKS_CLI, else
 *      `databricks` on PATH, and only a CLI at least as new as the bundle's floor (older schemas lack the
 *      resources we render).
 * With neither, the schema checks are skipped and `skip` says which of the two would unblock them. Neither
 * npm nor Debian ships the CLI or its schema, so a clone with no CLI has no source the project may use.
 */
export const SHARED_SCHEMA_FILE = path.resolve(PROJECT_ROOT, "../shared/databricks/bundle-jsonschema.json");

export type BundleSchemaSource =
  | { schema: object; source: string; skip?: undefined }
  | { schema?: undefined; source?: undefined; skip: string };

export function findBundleSchema(
  options: { sharedFile?: string; cli?: string; env?: NodeJS.ProcessEnv } = {},
): BundleSchemaSource {
  const sharedFile = options.sharedFile ?? SHARED_SCHEMA_FILE;
  if (existsSync(sharedFile)) {
    return { schema: JSON.parse(readFileSync(sharedFile, "utf8")) as object, source: sharedFile };
  }
  const env = options.env ?? process.env;
  const cli = options.cli ?? (env.DATABRICKS_CLI || "databricks");
  const unblock = `put the CLI's schema at ${sharedFile} or install the Databricks CLI ${MIN_CLI_VERSION} or later (its \`databricks bundle schema\` prints it; set DATABRICKS_CLI if it is not \`databricks\` on PATH)`;
  const run = (args: string[]) =>
    execFileSync(cli, args, {
      encoding: "utf8",
      env,
      maxBuffer: 64 * 1024 * 1024,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 30_000,
    });
  let version: string | undefined;
  try {
    version = semver.coerce(/v?(\d+\.\d+\.\d+)/.exec(run(["version"]))?.[1] ?? "")?.version;
  } catch (err) {
    const why = (err as { code?: string }).code === "ENOENT" ? `no \`${cli}\`` : `\`${cli} version\` failed`;
    return { skip: `no bundle schema here (${why}): ${unblock}` };
  }
  if (!version) return { skip: `no bundle schema here (\`${cli} version\` printed no version): ${unblock}` };
  if (semver.lt(version, MIN_CLI_VERSION))
    return {
      skip: `no bundle schema here (\`${cli}\` is ${version}, older than ${MIN_CLI_VERSION}): ${unblock}`,
    };
  let printed: string;
  try {
    printed = run(["bundle", "schema"]);
  } catch (err) {
    return {
      skip: `no bundle schema here (\`${cli} bundle schema\` failed: ${String(err).slice(0, 200)}): ${unblock}`,
    };
  }
  // A CLI that answers but prints no schema is a broken source, not an absent one: fail, do not skip.
  const schema = JSON.parse(printed) as object;
  return { schema, source: `\`${cli} bundle schema\` (Databricks CLI ${version})` };
}
