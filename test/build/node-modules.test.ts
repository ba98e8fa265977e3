import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { flattenNodeModules } from "../../src/build/node-modules.js";
import { tempDir } from "../support/tmp.js";

/** A pnpm-style package: its real folder in the virtual store, its deps as links beside it. */
function storePackage(nm: string, name: string, version: string, deps: Record<string, string> = {}): void {
  const id = `${name.replace("/", "+")}@${version}`;
  const dir = path.join(nm, ".pnpm", id, "node_modules", name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version }));
  writeFileSync(path.join(dir, "index.js"), `module.exports = "${name}@${version}";\n`);
  writeFileSync(path.join(dir, "index.js.map"), "{}");
  for (const [dep, depVersion] of Object.entries(deps)) {
    const link = path.join(nm, ".pnpm", id, "node_modules", dep);
    mkdirSync(path.dirname(link), { recursive: true });
    const target = path.join(nm, ".pnpm", `${dep.replace("/", "+")}@${depVersion}`, "node_modules", dep);
    symlinkSync(path.relative(path.dirname(link), target), link);
  }
}

function topLink(nm: string, name: string, version: string): void {
  const link = path.join(nm, name);
  mkdirSync(path.dirname(link), { recursive: true });
  const target = path.join(nm, ".pnpm", `${name.replace("/", "+")}@${version}`, "node_modules", name);
  symlinkSync(path.relative(path.dirname(link), target), link);
}

function versionAt(dir: string): string {
  return (JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version;
}

describe("flattenNodeModules", () => {
  it("turns pnpm's symlinked layout into one Node resolves the same way, with no links", () => {
    const src = tempDir();
    const nm = path.join(src, "node_modules");
    storePackage(nm, "app-dep", "1.0.0", { ms: "2.1.2", "@scope/util": "1.0.0" });
    storePackage(nm, "ms", "2.1.2");
    storePackage(nm, "ms", "2.1.3");
    storePackage(nm, "@scope/util", "1.0.0", { ms: "2.1.3" });
    storePackage(nm, "typescript", "5.8.2");
    topLink(nm, "app-dep", "1.0.0");
    topLink(nm, "ms", "2.1.3");
    topLink(nm, "typescript", "5.8.2");

    const dest = path.join(tempDir(), "node_modules");
    const result = flattenNodeModules({
      roots: [nm],
      within: src,
      dest,
      prunePackage: (n) => (n === "typescript" ? "compile-time only" : undefined),
      skipFile: (rel) => rel.endsWith(".map"),
    });

    expect(versionAt(path.join(dest, "ms"))).toBe("2.1.3");
    // app-dep needs ms@2.1.2 while the top holds 2.1.3: nested under it.
    expect(versionAt(path.join(dest, "app-dep/node_modules/ms"))).toBe("2.1.2");
    // @scope/util needs the top-level ms@2.1.3: hoisted, not duplicated.
    expect(versionAt(path.join(dest, "@scope/util"))).toBe("1.0.0");
    expect(readdirSync(path.join(dest, "@scope/util"))).toEqual(["index.js", "package.json"]);
    expect(readdirSync(dest).sort()).toEqual(["@scope", "app-dep", "ms"]);
    expect(result).toMatchObject({ packages: 4, nested: 1, pruned: { typescript: "compile-time only" } });
  });

  it("leaves out links that point out of the output", () => {
    const src = tempDir();
    const outside = tempDir();
    writeFileSync(
      path.join(outside, "package.json"),
      JSON.stringify({ name: "workspace-app", version: "1.0.0" }),
    );
    const nm = path.join(src, "node_modules");
    mkdirSync(nm, { recursive: true });
    symlinkSync(outside, path.join(nm, "workspace-app"));
    const dest = path.join(tempDir(), "node_modules");
    const result = flattenNodeModules({ roots: [nm], within: src, dest });
    expect(result.packages).toBe(0);
    expect(Object.keys(result.outside)).toEqual(["workspace-app"]);
  });
});
