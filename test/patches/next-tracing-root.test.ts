import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import {
  KNOWN_NEXT_CONFIG,
  NEXT_CONFIG_FILE,
  patchNextConfigText,
  TRACING_ROOT_IMPORT,
  verifyNextConfigText,
} from "../../src/patches/next-tracing-root.js";
import { SYNTHETIC_NEXT_CONFIG } from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";
import { driftOf, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;

describe("next-tracing-root patch", () => {
  it("makes Next trace from MetaMCP's root even inside a project with its own lockfile (where Next 15.5 picks the outer one)", async () => {
    const out = patchNextConfigText(NEXT_CONFIG_FILE, SYNTHETIC_NEXT_CONFIG, ctx);
    expect(out.edits).toBe(2);
    expect(out.text.startsWith(`${TRACING_ROOT_IMPORT}\n/** @type`)).toBe(true);
    // Upstream's text is all still there, in order, byte for byte.
    const added = out.text.split("\n").filter((l) => !SYNTHETIC_NEXT_CONFIG.split("\n").includes(l));
    expect(added).toHaveLength(3);
    expect(() => verifyNextConfigText(NEXT_CONFIG_FILE, out.text, ctx)).not.toThrow();
    expect(patchNextConfigText(NEXT_CONFIG_FILE, out.text, ctx)).toEqual({ text: out.text, edits: 0 });

    // Load it as Next does (an ES module, `"type": "module"`), in a clone-inside-a-project layout, with a
    // space in the path: the root is upstream's monorepo dir, not the project around it.
    const project = tempDir("mmdb-next-root ");
    writeFileSync(path.join(project, "package-lock.json"), "{}\n");
    const monorepo = path.join(project, "build", "metamcp");
    const frontend = path.join(monorepo, "apps", "frontend");
    mkdirSync(frontend, { recursive: true });
    writeFileSync(path.join(monorepo, "pnpm-lock.yaml"), "lockfileVersion: '9.0'\n");
    writeFileSync(path.join(frontend, "package.json"), '{"type":"module"}\n');
    writeFileSync(path.join(frontend, "next.config.js"), out.text);
    const loaded = (await import(pathToFileURL(path.join(frontend, "next.config.js")).href)) as {
      default: { output: string; outputFileTracingRoot: string };
    };
    expect(path.resolve(loaded.default.outputFileTracingRoot)).toBe(monorepo);
    expect(loaded.default.output).toBe("standalone");
  });

  it("a config of another shape, or with a root of upstream's own, stops with drift (exit 3)", () => {
    const cases: [string, string][] = [
      [SYNTHETIC_NEXT_CONFIG.replace('output: "standalone",', 'output: "export",'), KNOWN_NEXT_CONFIG],
      [
        SYNTHETIC_NEXT_CONFIG.replace(
          "export default nextConfig;",
          "export default { output: 'standalone' };",
        ),
        KNOWN_NEXT_CONFIG,
      ],
      [
        SYNTHETIC_NEXT_CONFIG.replace(
          'output: "standalone",',
          'output: "standalone",\n  outputFileTracingRoot: "/srv",',
        ),
        'found `outputFileTracingRoot: "/srv"`',
      ],
    ];
    for (const [text, found] of cases) {
      const err = driftOf(() => patchNextConfigText(NEXT_CONFIG_FILE, text, ctx));
      expect(err.exitCode).toBe(3);
      expect(err.message).toContain(
        `upstream drift in ${NEXT_CONFIG_FILE} (MetaMCP v9.9.9, patch next-tracing-root)`,
      );
      expect(err.message).toContain(found);
    }
    // verify catches a tree whose root was taken out again after apply
    const patched = patchNextConfigText(NEXT_CONFIG_FILE, SYNTHETIC_NEXT_CONFIG, ctx).text;
    expect(
      driftOf(() => verifyNextConfigText(NEXT_CONFIG_FILE, patched.split("\n").slice(1).join("\n"), ctx))
        .exitCode,
    ).toBe(3);
  });
});
