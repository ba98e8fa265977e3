import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DriftError } from "../../src/errors.js";
import {
  BACKEND_ENTRY_FILE,
  endpointIdentityPatch,
  UNSUPPORTED_NOTE,
} from "../../src/patches/endpoint-identity.js";
import {
  ENDPOINT_IDENTITY_MODULE_FILE,
  ENDPOINT_IDENTITY_ROUTE,
  endpointIdentityModule,
  IDENTITY_MODULE_FILE,
} from "../../src/patches/endpoint-identity-module.js";
import { MemoryTree, PATCHES } from "../../src/patches/index.js";
import type { PrepareManifest } from "../../src/upstream/manifest.js";
import { PROJECT_ROOT, runCli } from "../support/cli.js";
import {
  createSyntheticUpstream,
  type MiddlewareForm,
  SYNTHETIC_BACKEND_ENTRY,
  type SyntheticUpstream,
  syntheticMiddleware,
} from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

const ctx = { schema: "metamcp_app", upstreamRef: "v9.9.9" };
const HOOK_LINE = "if (await __databricksEndpointIdentity(req, res, next)) return;";

/** Our identity module as prepare copies it in (overlay/), which the patch's code imports. */
const IDENTITY_MODULE = readFileSync(path.join(PROJECT_ROOT, "overlay", IDENTITY_MODULE_FILE), "utf8");

function treeOf(form: MiddlewareForm, extra: Record<string, string> = {}): MemoryTree {
  return new MemoryTree({
    ...syntheticMiddleware(form),
    [BACKEND_ENTRY_FILE]: SYNTHETIC_BACKEND_ENTRY,
    [IDENTITY_MODULE_FILE]: IDENTITY_MODULE,
    ...extra,
  });
}

function firstStatementOfAuthenticate(text: string): string {
  const body = text.slice(text.indexOf("export const authenticateApiKey"));
  const open = body.indexOf("=> {");
  return body
    .slice(open + 4)
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("//"))[0]!;
}

function expectDrift(fn: () => unknown, file: string, what: RegExp): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DriftError);
    expect((err as DriftError).exitCode).toBe(3);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(what);
    return;
  }
  throw new Error("expected a drift failure");
}

describe("patch endpoint-identity on MetaMCP's middleware shapes", () => {
  for (const [form, file] of [
    ["api-key-auth", "apps/backend/src/middleware/api-key-auth.middleware.ts"],
    ["api-key-oauth", "apps/backend/src/middleware/api-key-oauth.middleware.ts"],
  ] as const) {
    it(`${form}: the identity check is authenticateApiKey's first statement, the route is mounted, our module written`, () => {
      const tree = treeOf(form);
      const before = tree.read(file)!;
      const result = endpointIdentityPatch.apply(tree, ctx);
      expect(result.note).toBeUndefined();
      expect(result.files).toEqual([
        { path: file, edits: 2 },
        { path: BACKEND_ENTRY_FILE, edits: 2 },
        { path: ENDPOINT_IDENTITY_MODULE_FILE, edits: 1 },
      ]);
      const after = tree.read(file)!;
      expect(firstStatementOfAuthenticate(after)).toBe(HOOK_LINE);
      // Upstream's own code is all still there, byte for byte, after our two insertions.
      const withoutOurs = after
        .replace(
          /^import \{ acceptDatabricksIdentity as __databricksEndpointIdentity \} from "\.\.\/databricks-endpoint-identity";\n/,
          "",
        )
        .replace(
          /\n {2}\/\/ metamcp-databricks:[^\n]*\n {2}\/\/ [^\n]*\n {2}if \(await __databricksEndpointIdentity\(req, res, next\)\) return;/,
          "",
        );
      expect(withoutOurs).toBe(before);
      const entry = tree.read(BACKEND_ENTRY_FILE)!;
      expect(entry).toMatch(
        new RegExp(
          `const app = express\\(\\);\\n\\n// metamcp-databricks:[^\\n]*\\napp\\.use\\("${ENDPOINT_IDENTITY_ROUTE}", __databricksEndpointIdentitySettings\\);`,
        ),
      );
      // The mount comes before upstream's /metamcp router, so upstream never sees our path.
      expect(entry.indexOf(ENDPOINT_IDENTITY_ROUTE)).toBeLessThan(
        entry.indexOf('app.use("/metamcp", publicEndpointsRouter)'),
      );
      const module = tree.read(ENDPOINT_IDENTITY_MODULE_FILE)!;
      expect(module).toContain('"metamcp_app"."databricks_endpoint_identity"');
      expect(module).toContain('from "./databricks-identity"');
      endpointIdentityPatch.verify(tree, ctx);
      // Idempotent: a second run changes nothing.
      const snapshot = tree.toObject();
      expect(endpointIdentityPatch.apply(tree, ctx).files).toEqual([]);
      expect(tree.toObject()).toEqual(snapshot);
    });
  }

  it("needs the identity module (overlay/): verify fails loudly without it", () => {
    const tree = treeOf("api-key-oauth");
    endpointIdentityPatch.apply(tree, ctx);
    const without = new MemoryTree(
      Object.fromEntries(Object.entries(tree.toObject()).filter(([f]) => f !== IDENTITY_MODULE_FILE)),
    );
    expectDrift(() => endpointIdentityPatch.verify(without, ctx), IDENTITY_MODULE_FILE, /the file to exist/);
  });

  it("v2.0–v2.1 (keys checked inside each router, no endpoint owners): no change, and prepare is told the release lacks it", () => {
    const tree = treeOf("per-router");
    const snapshot = tree.toObject();
    const result = endpointIdentityPatch.apply(tree, ctx);
    expect(result).toEqual({ files: [], note: UNSUPPORTED_NOTE });
    expect(tree.toObject()).toEqual(snapshot);
    endpointIdentityPatch.verify(tree, ctx);
  });

  it("drift fails loudly (exit 3) naming the file: renamed middleware, two apps, no middleware at all, a half-patched tree", () => {
    const file = "apps/backend/src/middleware/api-key-oauth.middleware.ts";
    const renamed = treeOf("api-key-oauth");
    renamed.write(
      file,
      renamed.read(file)!.replace("export const authenticateApiKey", "export const authenticate"),
    );
    expectDrift(
      () => endpointIdentityPatch.apply(renamed, ctx),
      file,
      /authenticateApiKey = async \(req, res, next\).*found 0/,
    );

    const twoParams = treeOf("api-key-auth");
    const f2 = "apps/backend/src/middleware/api-key-auth.middleware.ts";
    twoParams.write(f2, twoParams.read(f2)!.replace("  next: express.NextFunction,\n) => {", ") => {"));
    expectDrift(() => endpointIdentityPatch.apply(twoParams, ctx), f2, /found 1/);

    const twoApps = treeOf("api-key-oauth");
    twoApps.write(BACKEND_ENTRY_FILE, `${SYNTHETIC_BACKEND_ENTRY}\nconst admin = express();\n`);
    expectDrift(() => endpointIdentityPatch.apply(twoApps, ctx), BACKEND_ENTRY_FILE, /express\(\)`; found 2/);

    const none = new MemoryTree({ [BACKEND_ENTRY_FILE]: SYNTHETIC_BACKEND_ENTRY });
    expectDrift(
      () => endpointIdentityPatch.apply(none, ctx),
      "api-key-oauth.middleware.ts",
      /api-key-auth\.middleware\.ts/,
    );

    const half = treeOf("api-key-oauth");
    endpointIdentityPatch.apply(half, ctx);
    half.write(file, half.read(file)!.replace(`  ${HOOK_LINE}`, ""));
    expectDrift(() => endpointIdentityPatch.verify(half, ctx), file, /first statement of authenticateApiKey/);
  });

  it("runs after the other patches (the schema patch must not touch our module, our module reads the schema's tables)", () => {
    expect(PATCHES.map((p) => p.id).at(-1)).toBe("endpoint-identity");
  });
});

describe("the code the patch writes", () => {
  it("type-checks under strict TypeScript against the real drizzle-orm and pg types and our identity module (as MetaMCP's db module exports them)", () => {
    const dir = tempDir("mmdb-eid-tsc-");
    mkdirSync(path.join(dir, "db"));
    writeFileSync(path.join(dir, "databricks-endpoint-identity.ts"), endpointIdentityModule("metamcp_app"));
    writeFileSync(path.join(dir, "databricks-identity.ts"), IDENTITY_MODULE);
    // MetaMCP's db/index.ts exports `db = drizzle(pool, { schema })` (db-pool-credentials).
    writeFileSync(
      path.join(dir, "db/index.ts"),
      'import { drizzle } from "drizzle-orm/node-postgres";\nimport pg from "pg";\nexport const db = drizzle(new pg.Pool());\n',
    );
    writeFileSync(
      path.join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: "ES2022",
          module: "ESNext",
          moduleResolution: "Bundler",
          noEmit: true,
          skipLibCheck: true,
          types: ["node"],
        },
        files: ["databricks-endpoint-identity.ts", "databricks-identity.ts"],
      }),
    );
    symlinkSync(path.join(PROJECT_ROOT, "node_modules"), path.join(dir, "node_modules"));
    const tsc = path.join(PROJECT_ROOT, "node_modules/typescript/bin/tsc");
    expect(() => execFileSync(process.execPath, [tsc, "-p", dir], { encoding: "utf8" })).not.toThrow();
  });
});

/** MetaMCP's REAL middleware at every shape's tags, when the upstream mirror is on this machine. */
const MIRROR = "/work/.mirror/metatool-ai+metamcp/repo";
const hasMirror = existsSync(MIRROR);
describe("patch endpoint-identity on MetaMCP's real code", () => {
  const REFS = ["v2.2.0", "v2.3.8", "v2.4.0", "v2.4.5", "v2.4.22", "v2.5.3", "main"];
  const show = (ref: string, file: string): string | undefined => {
    try {
      return execFileSync("git", ["--git-dir", MIRROR, "show", `${ref}:${file}`], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
    } catch {
      return undefined;
    }
  };
  it.skipIf(!hasMirror)(
    `patches and verifies ${REFS.join(", ")}; says v2.0.0/v2.1.1 lack it (skipped: no upstream mirror at ${MIRROR})`,
    () => {
      for (const ref of [...REFS, "v2.0.0", "v2.1.1"]) {
        const files: Record<string, string> = {};
        for (const f of [
          "apps/backend/src/middleware/api-key-oauth.middleware.ts",
          "apps/backend/src/middleware/api-key-auth.middleware.ts",
          "apps/backend/src/routers/public-metamcp/streamable-http.ts",
          "apps/backend/src/routers/public-metamcp/sse.ts",
          BACKEND_ENTRY_FILE,
        ]) {
          const text = show(ref, f);
          if (text !== undefined) files[f] = text;
        }
        const tree = new MemoryTree({ ...files, [IDENTITY_MODULE_FILE]: IDENTITY_MODULE });
        const result = endpointIdentityPatch.apply(tree, { ...ctx, upstreamRef: ref });
        if (ref === "v2.0.0" || ref === "v2.1.1") {
          expect(result.note, ref).toBe(UNSUPPORTED_NOTE);
          continue;
        }
        expect(result.files.length, ref).toBe(3);
        endpointIdentityPatch.verify(tree, { ...ctx, upstreamRef: ref });
        const mw = result.files[0]!.path;
        expect(firstStatementOfAuthenticate(tree.read(mw)!), ref).toBe(HOOK_LINE);
      }
    },
  );
});

describe("prepare with the endpoint-identity patch (the real CLI)", () => {
  let upstream: SyntheticUpstream;
  let drifted: SyntheticUpstream;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
    drifted = createSyntheticUpstream({
      extraFiles: () => ({
        "apps/backend/src/middleware/api-key-auth.middleware.ts": syntheticMiddleware("api-key-auth")[
          "apps/backend/src/middleware/api-key-auth.middleware.ts"
        ]!.replace("export const authenticateApiKey = async", "export const checkKey = async"),
      }),
    });
  });
  afterAll(() => {
    upstream?.cleanup();
    drifted?.cleanup();
  });

  it("v2.2.0: patched, recorded in the manifest; v2.1.0: prepared, and prepare says the release lacks it", async () => {
    const root = tempDir("mmdb-eid-");
    const ok = await runCli(["prepare", "--repo", upstream.url, "--ref", "v2.2.0", "--build-dir", "out"], {
      cwd: root,
    });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/patch {4}endpoint-identity {3}5 edit\(s\) in 3 file\(s\)/);
    const manifest = JSON.parse(
      readFileSync(path.join(root, "out/.metamcp-databricks/manifest.json"), "utf8"),
    ) as PrepareManifest;
    const rec = manifest.patches.find((p) => p.id === "endpoint-identity")!;
    expect(rec.files.map((f) => f.path).sort()).toEqual(
      [
        "apps/backend/src/middleware/api-key-auth.middleware.ts",
        BACKEND_ENTRY_FILE,
        ENDPOINT_IDENTITY_MODULE_FILE,
      ].sort(),
    );
    expect(readFileSync(path.join(root, "out", ENDPOINT_IDENTITY_MODULE_FILE), "utf8")).toContain(
      "acceptDatabricksIdentity",
    );

    const old = await runCli(["prepare", "--repo", upstream.url, "--ref", "v2.1.0", "--build-dir", "old"], {
      cwd: root,
    });
    expect(old.exitCode, old.stderr).toBe(0);
    expect(old.stdout).toContain(UNSUPPORTED_NOTE);
    expect(old.stderr).toContain(UNSUPPORTED_NOTE);
    const oldManifest = JSON.parse(
      readFileSync(path.join(root, "old/.metamcp-databricks/manifest.json"), "utf8"),
    ) as PrepareManifest;
    expect(oldManifest.patches.find((p) => p.id === "endpoint-identity")?.note).toBe(UNSUPPORTED_NOTE);
  });

  it("a middleware it does not know stops prepare with exit 3, naming the file and the shape expected", async () => {
    const root = tempDir("mmdb-eid-drift-");
    const r = await runCli(["prepare", "--repo", drifted.url, "--ref", "v2.2.0", "--build-dir", "out"], {
      cwd: root,
    });
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain(
      "upstream drift in apps/backend/src/middleware/api-key-auth.middleware.ts (MetaMCP v2.2.0, patch endpoint-identity)",
    );
    expect(r.stderr).toContain("export const authenticateApiKey = async (req, res, next)");
    expect(existsSync(path.join(root, "out"))).toBe(false);
  });
});
