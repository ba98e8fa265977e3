import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { flattenNodeModules } from "../../src/build/node-modules.js";
import { optionalPeersNotProvided } from "../../src/build/tree-policy.js";
import { tempDir } from "../support/tmp.js";

/** A pnpm-style package: its real folder in the virtual store, its deps as links beside it. */
function storePackage(
  nm: string,
  name: string,
  version: string,
  deps: Record<string, string> = {},
  manifest: Record<string, unknown> = {},
  code = `module.exports = "${name}@${version}";\n`,
): void {
  const id = `${name.replace("/", "+")}@${version}`;
  const dir = path.join(nm, ".pnpm", id, "node_modules", name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name, version, ...manifest }));
  writeFileSync(path.join(dir, "index.js"), code);
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

  it("does not follow optional peers the host does not provide, nor what only they bring (MetaMCP main's next)", () => {
    // The shape of MetaMCP main's backend closure (pnpm deploy --prod): better-auth's optional peers
    // next/react resolved from the workspace, next's 136 MB swc binary behind them, a hidden-hoisted
    // fallback folder holding everything.
    const src = tempDir();
    const nm = path.join(src, "node_modules");
    const peers = (names: string[]) => ({
      peerDependencies: Object.fromEntries(names.map((n) => [n, "*"])),
      peerDependenciesMeta: Object.fromEntries(names.map((n) => [n, { optional: true }])),
    });
    storePackage(
      nm,
      "better-auth",
      "1.4.18",
      { next: "15.5.12", react: "19.1.2", kysely: "0.28.8", "drizzle-orm": "0.44.2", pg: "8.16.0" },
      { ...peers(["next", "react", "drizzle-orm", "pg"]), dependencies: { kysely: "0.28.8" } },
      'module.exports = require("kysely") + " via better-auth";\n',
    );
    storePackage(nm, "drizzle-orm", "0.44.2", { kysely: "0.28.8", pg: "8.16.0" }, peers(["kysely", "pg"]));
    storePackage(nm, "kysely", "0.28.8");
    storePackage(nm, "pg", "8.16.0");
    storePackage(nm, "react", "19.1.2");
    storePackage(nm, "next", "15.5.12", {
      "@next/swc-linux-x64-gnu": "15.5.12",
      "styled-jsx": "5.1.6",
      react: "19.1.2",
    });
    storePackage(nm, "@next/swc-linux-x64-gnu", "15.5.12");
    writeFileSync(
      path.join(
        nm,
        ".pnpm/@next+swc-linux-x64-gnu@15.5.12/node_modules/@next/swc-linux-x64-gnu/next-swc.node",
      ),
      Buffer.alloc(11 * 1024 * 1024),
    );
    storePackage(nm, "styled-jsx", "5.1.6");
    storePackage(nm, "phantom", "1.0.0"); // hoisted only, nobody declares it: kept as a fallback
    for (const [name, version] of [
      ["better-auth", "1.4.18"],
      ["drizzle-orm", "0.44.2"],
      ["pg", "8.16.0"],
    ] as const)
      topLink(nm, name, version);
    const hidden = path.join(nm, ".pnpm/node_modules");
    for (const [name, version] of [
      ["next", "15.5.12"],
      ["@next/swc-linux-x64-gnu", "15.5.12"],
      ["styled-jsx", "5.1.6"],
      ["react", "19.1.2"],
      ["kysely", "0.28.8"],
      ["phantom", "1.0.0"],
    ] as const) {
      const link = path.join(hidden, name);
      mkdirSync(path.dirname(link), { recursive: true });
      symlinkSync(
        path.relative(
          path.dirname(link),
          path.join(nm, ".pnpm", `${name.replace("/", "+")}@${version}`, "node_modules", name),
        ),
        link,
      );
    }

    const dest = path.join(tempDir(), "node_modules");
    const result = flattenNodeModules({
      roots: [nm],
      fallbacks: [hidden],
      within: src,
      dest,
      skipDependency: optionalPeersNotProvided("the backend", ["better-auth", "drizzle-orm", "pg"]),
    });
    expect(readdirSync(dest).sort()).toEqual(["better-auth", "drizzle-orm", "kysely", "pg", "phantom"]);
    expect(Object.keys(result.pruned).sort()).toEqual(["next", "react"]);
    expect(result.pruned.next).toBe(
      "an optional peer of better-auth that the backend does not provide (not in its dependencies); pnpm linked it because the workspace has it",
    );
    // kysely is an optional peer of drizzle-orm but a real dependency of better-auth: kept, not reported.
    expect(versionAt(path.join(dest, "kysely"))).toBe("0.28.8");
    // And what is left resolves and runs.
    const out = execFileSync("node", ["-e", 'process.stdout.write(require("better-auth"))'], {
      cwd: path.dirname(dest),
      encoding: "utf8",
    });
    expect(out).toBe("kysely@0.28.8 via better-auth");
  });
});
