import { chmodSync, existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { loadConfig } from "../../src/config/load.js";
import type { Target } from "../../src/config/variables.js";
import { renderBundle } from "../../src/databricks/render.js";
import { findBundleSchema, SHARED_SCHEMA_FILE } from "../support/bundle-schema.js";
import { tempDir } from "../support/tmp.js";

/**
 * Where the render tests' bundle schema comes from on a clone without ../shared: an installed Databricks
 * CLI's `databricks bundle schema`. A stand-in CLI here answers `version` and `bundle schema` as the real one
 * does (cmd/version, cmd/bundle/schema.go: the embedded bundle/schema/jsonschema.json on stdout).
 */
function fakeCli(dir: string, version: string, schemaFile?: string): string {
  const bin = path.join(dir, "databricks");
  const schema = schemaFile
    ? `cat ${JSON.stringify(schemaFile)}`
    : `printf '%s' '{"type":"object","required":["bundle"]}'`;
  writeFileSync(
    bin,
    `#!/bin/sh
case "$*" in
  version) echo "Databricks CLI v${version}" ;;
  "bundle schema") ${schema} ;;
  *) echo "Error: unknown command" >&2; exit 1 ;;
esac
`,
  );
  chmodSync(bin, 0o755);
  return bin;
}

const NO_SHARED = "/nonexistent/shared/databricks/bundle-jsonschema.json";

describe("the bundle schema's source", () => {
  it("../shared's copy first", () => {
    const dir = tempDir();
    const file = path.join(dir, "bundle-jsonschema.json");
    writeFileSync(file, '{"title":"shared"}');
    expect(findBundleSchema({ sharedFile: file, cli: fakeCli(dir, "1.13.0") })).toEqual({
      schema: { title: "shared" },
      source: file,
    });
  });

  it("without ../shared: what an installed CLI's `bundle schema` prints", () => {
    const cli = fakeCli(tempDir(), "1.13.0");
    expect(findBundleSchema({ sharedFile: NO_SHARED, cli })).toEqual({
      schema: { type: "object", required: ["bundle"] },
      source: `\`${cli} bundle schema\` (Databricks CLI 1.13.0)`,
    });
  });

  it("$DATABRICKS_CLI names the CLI, as for the commands", () => {
    const cli = fakeCli(tempDir(), "1.4.0");
    const found = findBundleSchema({
      sharedFile: NO_SHARED,
      env: { PATH: "/usr/bin:/bin", DATABRICKS_CLI: cli },
    });
    expect(found.source).toBe(`\`${cli} bundle schema\` (Databricks CLI 1.4.0)`);
  });

  it("neither: skipped, naming both sources that would unblock it", () => {
    const found = findBundleSchema({ sharedFile: NO_SHARED, cli: "/nonexistent/bin/databricks" });
    expect(found.schema).toBeUndefined();
    expect(found.skip).toBe(
      `no bundle schema here (no \`/nonexistent/bin/databricks\`): put the CLI's schema at ${NO_SHARED} or install the Databricks CLI 1.4.0 or later (its \`databricks bundle schema\` prints it; set DATABRICKS_CLI if it is not \`databricks\` on PATH)`,
    );
  });

  it("a CLI older than the bundle's floor: skipped, saying its version (its schema lacks our resources)", () => {
    const found = findBundleSchema({ sharedFile: NO_SHARED, cli: fakeCli(tempDir(), "1.3.0") });
    expect(found.schema).toBeUndefined();
    expect(found.skip).toMatch(/is 1\.3\.0, older than 1\.4\.0\): put the CLI's schema at /);
  });

  it("a CLI whose `bundle schema` prints no JSON fails the run instead of skipping", () => {
    const dir = tempDir();
    const notJson = path.join(dir, "not.json");
    writeFileSync(notJson, "Usage: databricks bundle [command]\n");
    expect(() => findBundleSchema({ sharedFile: NO_SHARED, cli: fakeCli(dir, "1.13.0", notJson) })).toThrow(
      SyntaxError,
    );
  });

  it.skipIf(!existsSync(SHARED_SCHEMA_FILE))(
    `through the CLI's output the real schema checks a rendered bundle${existsSync(SHARED_SCHEMA_FILE) ? "" : ` (skipped: no ${SHARED_SCHEMA_FILE} to stand in for the CLI's output)`}`,
    () => {
      const found = findBundleSchema({
        sharedFile: NO_SHARED,
        cli: fakeCli(tempDir(), "1.13.0", SHARED_SCHEMA_FILE),
      });
      expect(found.skip).toBeUndefined();
      const ajv = new Ajv({ strict: false, allErrors: true });
      const validate = ajv.compile(found.schema!);
      const load = (t: Target) =>
        loadConfig({ cwd: "/work/project", env: { TARGET: t }, dotenvPath: "/nonexistent" });
      const doc = parse(renderBundle(load("dev"), load).databricksYml);
      expect(validate(doc), ajv.errorsText(validate.errors)).toBe(true);
      doc.resources.apps.metamcp.startd = true;
      expect(validate(doc)).toBe(false);
    },
  );
});
