import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  BACKEND_ENTRY_FILE,
  endpointIdentityPatch,
  UNSUPPORTED_NOTE,
} from "../../src/patches/endpoint-identity.js";
import {
  ENDPOINT_IDENTITY_DEFAULT_VAR,
  ENDPOINT_IDENTITY_MODULE_FILE,
  ENDPOINT_IDENTITY_ROUTE,
  ENDPOINT_IDENTITY_TABLE,
  IDENTITY_MODULE_FILE,
  IDENTITY_SIGNUP_PATH,
  SCHEMA_MODULE_FILE,
  schemaModule,
} from "../../src/patches/endpoint-identity-module.js";
import { MemoryTree, PATCHES } from "../../src/patches/index.js";
import {
  type MiddlewareForm,
  syntheticBackendIndex,
  syntheticMiddleware,
} from "../support/synthetic-upstream.js";
import {
  ENDPOINT_IDENTITY_MODULE,
  expectDrift,
  IDENTITY_MODULE,
  linkedPackageDir,
  PATCH_CTX,
  TSC,
} from "./helpers.js";

const ctx = PATCH_CTX;
const HOOK_LINE = "if (await __databricksEndpointIdentity(req, res, next)) return;";

/** MetaMCP's backend entry as v2.2.0–v2.4.x shape it (the form the middleware shapes come with). */
const BACKEND_ENTRY = syntheticBackendIndex("async-callback");

function treeOf(form: MiddlewareForm, extra: Record<string, string> = {}): MemoryTree {
  return new MemoryTree({
    ...syntheticMiddleware(form),
    [BACKEND_ENTRY_FILE]: BACKEND_ENTRY,
    [IDENTITY_MODULE_FILE]: IDENTITY_MODULE,
    [ENDPOINT_IDENTITY_MODULE_FILE]: ENDPOINT_IDENTITY_MODULE,
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
        { path: SCHEMA_MODULE_FILE, edits: 1 },
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
      expect(tree.read(SCHEMA_MODULE_FILE)).toContain('export const DATABRICKS_SCHEMA = "metamcp_app";');
      // Our module is the overlay's file as prepare copied it, untouched by the patch.
      expect(tree.read(ENDPOINT_IDENTITY_MODULE_FILE)).toBe(ENDPOINT_IDENTITY_MODULE);
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

  it("v2.0–v2.1 (keys checked inside each router, no endpoint owners): only the schema line our module imports, and prepare is told the release lacks it", () => {
    const tree = treeOf("per-router");
    const snapshot = tree.toObject();
    const result = endpointIdentityPatch.apply(tree, ctx);
    expect(result).toEqual({ files: [{ path: SCHEMA_MODULE_FILE, edits: 1 }], note: UNSUPPORTED_NOTE });
    expect(tree.toObject()).toEqual({ ...snapshot, [SCHEMA_MODULE_FILE]: schemaModule(ctx.schema) });
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
    twoApps.write(BACKEND_ENTRY_FILE, `${BACKEND_ENTRY}\nconst admin = express();\n`);
    expectDrift(() => endpointIdentityPatch.apply(twoApps, ctx), BACKEND_ENTRY_FILE, /express\(\)`; found 2/);

    const none = new MemoryTree({ [BACKEND_ENTRY_FILE]: BACKEND_ENTRY });
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
    // Only databricks-tools follows it: it edits nothing but the first line of index.ts.
    expect(PATCHES.map((p) => p.id).slice(-2)).toEqual(["endpoint-identity", "databricks-tools"]);
  });
});

describe("the code the patch writes", () => {
  it("our module uses the names the runtime and connect use (route, table, default variable, sign-up path)", () => {
    for (const name of [ENDPOINT_IDENTITY_ROUTE, ENDPOINT_IDENTITY_DEFAULT_VAR, IDENTITY_SIGNUP_PATH])
      expect(ENDPOINT_IDENTITY_MODULE, name).toContain(name);
    expect(ENDPOINT_IDENTITY_MODULE).toContain(`"\${DATABRICKS_SCHEMA}"."${ENDPOINT_IDENTITY_TABLE}"`);
    expect(ENDPOINT_IDENTITY_MODULE).toContain('from "./databricks-schema"');
  });

  it("type-checks under strict TypeScript against the real drizzle-orm and pg types and our identity module (as MetaMCP's db module exports them)", () => {
    const dir = linkedPackageDir("mmdb-eid-tsc-", {
      "databricks-endpoint-identity.ts": ENDPOINT_IDENTITY_MODULE,
      "databricks-schema.ts": schemaModule("metamcp_app"),
      "databricks-identity.ts": IDENTITY_MODULE,
      // MetaMCP's db/index.ts exports `db = drizzle(pool, { schema })` (db-pool-credentials).
      "db/index.ts":
        'import { drizzle } from "drizzle-orm/node-postgres";\nimport pg from "pg";\nexport const db = drizzle(new pg.Pool());\n',
      "tsconfig.json": JSON.stringify({
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
    });
    expect(() => execFileSync(process.execPath, [TSC, "-p", dir], { encoding: "utf8" })).not.toThrow();
  });
});
