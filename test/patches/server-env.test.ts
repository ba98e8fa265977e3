// biome-ignore-all lint/suspicious/noTemplateCurlyInString: server env values ${NAME} are literal text MetaMCP expands
import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { MemoryTree } from "../../src/patches/index.js";
import {
  INSPECTOR_FILE,
  NO_EXPANSION_NOTE,
  serverEnvPatch,
  UTILS_FILE,
} from "../../src/patches/server-env.js";
import { SERVER_ENV_MODULE_FILE, serverEnvModule } from "../../src/patches/server-env-module.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { type ServersForm, syntheticServers } from "../support/synthetic-upstream.js";
import { expectDrift, linkedPackageDir, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;
const TSX = `${PROJECT_ROOT}/node_modules/tsx/dist/cli.mjs`;

describe("patch server-env on MetaMCP's shapes", () => {
  it("v2.4.13 on (and main): every process.env read in resolveEnvVariables goes through the allow-list; the inspector's spreads lose the secrets", () => {
    const tree = new MemoryTree(syntheticServers("v2.4.13"));
    const result = serverEnvPatch.apply(tree, ctx);
    expect(result.note).toBeUndefined();
    expect(result.files).toEqual([
      { path: UTILS_FILE, edits: 3 },
      { path: INSPECTOR_FILE, edits: 4 },
      { path: SERVER_ENV_MODULE_FILE, edits: 1 },
    ]);
    const utils = tree.read(UTILS_FILE)!;
    const fn = utils.slice(utils.indexOf("export function resolveEnvVariables"));
    expect(fn).not.toContain("process.env[");
    expect(fn).toContain("if (__databricksExpandableEnv(varName)) {");
    expect(tree.read(INSPECTOR_FILE)).not.toContain("...process.env");
    serverEnvPatch.verify(tree, ctx);
    const snapshot = tree.toObject();
    expect(serverEnvPatch.apply(tree, ctx).files).toEqual([]);
    expect(tree.toObject()).toEqual(snapshot);
  });

  for (const form of ["v2.0", "v2.2", "v2.5"] as ServersForm[]) {
    it(`${form}: no expansion in this release (a note); the inspector's spreads are still cleaned`, () => {
      const tree = new MemoryTree(syntheticServers(form));
      const result = serverEnvPatch.apply(tree, ctx);
      expect(result.note).toBe(NO_EXPANSION_NOTE);
      expect(result.files.map((f) => f.path)).toEqual(
        form === "v2.5" ? [SERVER_ENV_MODULE_FILE] : [INSPECTOR_FILE, SERVER_ENV_MODULE_FILE],
      );
      serverEnvPatch.verify(tree, ctx);
    });
  }

  it("drift fails loudly (exit 3): the function moved while others still import it, another use of process.env in the inspector, a half-patched tree", () => {
    const moved = new MemoryTree(syntheticServers("v2.4.13"));
    moved.write(
      UTILS_FILE,
      moved.read(UTILS_FILE)!.replace("export function resolveEnvVariables", "export function resolveEnv"),
    );
    expectDrift(
      () => serverEnvPatch.apply(moved, ctx),
      UTILS_FILE,
      /resolveEnvVariables` \(other files use it\)/,
    );

    const other = new MemoryTree(syntheticServers("v2.2"));
    other.write(
      INSPECTOR_FILE,
      `${other.read(INSPECTOR_FILE)}\nconst secret = process.env.BETTER_AUTH_SECRET;\n`,
    );
    expectDrift(() => serverEnvPatch.apply(other, ctx), INSPECTOR_FILE, /found 2 use\(s\), 1 spread\(s\)/);

    const half = new MemoryTree(syntheticServers("v2.4.13"));
    serverEnvPatch.apply(half, ctx);
    half.write(
      UTILS_FILE,
      half
        .read(UTILS_FILE)!
        .replace(
          "resolved[key] = __databricksExpandableEnv(varName);",
          "resolved[key] = process.env[varName];",
        ),
    );
    expectDrift(() => serverEnvPatch.verify(half, ctx), UTILS_FILE, /only through __databricksExpandableEnv/);
  });
});

describe("what a server's ${NAME} expands to, running the patched resolveEnvVariables", () => {
  const SECRET = "s3cr3t-better-auth-value-0123456789";
  const env = {
    PATH: process.env.PATH ?? "/usr/bin",
    BETTER_AUTH_SECRET: SECRET,
    DATABRICKS_CLIENT_SECRET: "dbx-client-secret-value-987",
    PGPASSWORD: "pg-password-value-123",
    METAMCP_IDENTITY_SECRET: "identity-secret-value-456",
    DATABASE_URL: "postgresql://u@h/d",
    GITHUB_TOKEN: "ghp_allowed_token",
    MY_A: "prefixed-value",
    COPY_OF_SECRET: SECRET,
    NOT_LISTED: "not-listed-value",
    METAMCP_SERVER_ENV_ALLOW: "GITHUB_TOKEN, MY_*, COPY_OF_SECRET, BETTER_AUTH_SECRET, DATABRICKS_*",
  };
  const asked = {
    a: "${BETTER_AUTH_SECRET}",
    b: "${DATABRICKS_CLIENT_SECRET}",
    c: "${PGPASSWORD}",
    d: "${METAMCP_IDENTITY_SECRET}",
    e: "${DATABASE_URL}",
    f: "${GITHUB_TOKEN}",
    g: "${MY_A}",
    h: "${COPY_OF_SECRET}",
    i: "${NOT_LISTED}",
    j: "${PATH}",
    k: "plain",
  };

  function resolveWith(
    utils: string,
    module?: string,
  ): { resolved: Record<string, string>; inherited?: string[] } {
    const dir = linkedPackageDir("mmdb-env-", {
      "src/lib/metamcp/utils.ts": utils,
      ...(module ? { "src/databricks-server-env.ts": module } : {}),
      "src/run.ts": `import { resolveEnvVariables } from "./lib/metamcp/utils";
${module ? 'import { databricksInheritableEnv } from "./databricks-server-env";' : ""}
const out: Record<string, unknown> = { resolved: resolveEnvVariables(JSON.parse(process.argv[2]!)) };
${module ? "out.inherited = Object.keys(databricksInheritableEnv());" : ""}
process.stdout.write(JSON.stringify(out));
`,
    });
    return JSON.parse(
      execFileSync(process.execPath, [TSX, "src/run.ts", JSON.stringify(asked)], {
        cwd: dir,
        env,
        encoding: "utf8",
      }),
    );
  }

  it("upstream (unpatched) hands out the app's secrets: the reason for the patch", () => {
    const { resolved } = resolveWith(syntheticServers("v2.4.13")[UTILS_FILE]!);
    expect(resolved.a).toBe(SECRET);
    expect(resolved.b).toBe(env.DATABRICKS_CLIENT_SECRET);
  });

  it("patched: the app's secrets and unlisted names stay the literal ${NAME}, even when listed; listed names and prefixes expand; the inspector inherits no secret", () => {
    const tree = new MemoryTree(syntheticServers("v2.4.13"));
    serverEnvPatch.apply(tree, ctx);
    const { resolved, inherited } = resolveWith(tree.read(UTILS_FILE)!, serverEnvModule());
    expect(resolved).toEqual({
      ...asked,
      f: "ghp_allowed_token",
      g: "prefixed-value",
      j: env.PATH,
    });
    expect(JSON.stringify(resolved)).not.toContain(SECRET);
    expect(inherited).toEqual(expect.arrayContaining(["PATH", "GITHUB_TOKEN", "NOT_LISTED"]));
    for (const name of [
      "BETTER_AUTH_SECRET",
      "DATABRICKS_CLIENT_SECRET",
      "PGPASSWORD",
      "METAMCP_IDENTITY_SECRET",
      "DATABASE_URL",
      "COPY_OF_SECRET",
      "METAMCP_SERVER_ENV_ALLOW",
    ])
      expect(inherited).not.toContain(name);
  });
});
