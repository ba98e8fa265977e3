import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryTree, PATCHES } from "../../src/patches/index.js";
import {
  IMPL_FILE,
  INSPECTOR_FILE,
  NO_CALLER_NOTE,
  STDIO_SERVERS_PATCH_ID,
  stdioServersPatch,
} from "../../src/patches/stdio-servers.js";
import {
  REFUSED_APP_IDENTITY_MANAGERS,
  REFUSED_APP_IDENTITY_OFF,
  REFUSED_MANAGERS,
  REFUSED_OFF,
  STDIO_SERVERS_MODULE_FILE,
  stdioServersModule,
} from "../../src/patches/stdio-servers-module.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";
import { type ServersForm, syntheticServers } from "../support/synthetic-upstream.js";
import { expectDrift, PATCH_CTX, TSC } from "./helpers.js";

const ctx = PATCH_CTX;
const FORMS: ServersForm[] = ["v2.0", "v2.2", "v2.4.13", "v2.5"];

/** The first statement of `method`'s body in the (patched) implementations file. */
function firstStatement(text: string, method: string): string {
  const at = text.indexOf(`  ${method}: async (`);
  const body = text.slice(text.indexOf("=> {", at) + 4);
  return body
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("//"))[0]!;
}

describe("patch stdio-servers on MetaMCP's shapes (v2.0.x … v2.5.x, main)", () => {
  for (const form of FORMS) {
    it(`${form}: the check is the first statement of create, bulkImport and update; the inspector guard follows the session check`, () => {
      const tree = new MemoryTree(syntheticServers(form));
      const result = stdioServersPatch.apply(tree, ctx);
      expect(result.files).toEqual([
        { path: IMPL_FILE, edits: 4 },
        { path: INSPECTOR_FILE, edits: 2 },
        { path: STDIO_SERVERS_MODULE_FILE, edits: 1 },
      ]);
      const user = form === "v2.0" ? "undefined" : "userId";
      expect(result.note).toBe(form === "v2.0" ? NO_CALLER_NOTE : undefined);
      const impl = tree.read(IMPL_FILE)!;
      expect(firstStatement(impl, "create")).toBe(
        `await __databricksStdio.assertMayCreateServers([input], ${user});`,
      );
      expect(firstStatement(impl, "bulkImport")).toBe(
        `await __databricksStdio.assertMayCreateServers(Object.values(input?.mcpServers ?? {}), ${user});`,
      );
      expect(firstStatement(impl, "update")).toBe(
        `await __databricksStdio.assertMayUpdateServer(input, ${user});`,
      );
      expect(tree.read(INSPECTOR_FILE)).toMatch(
        /serverRouter\.use\(betterAuthMcpMiddleware\);\n\/\/ metamcp-databricks:[^\n]*\nserverRouter\.use\(__databricksStdioInspectorGuard\);/,
      );
      stdioServersPatch.verify(tree, ctx);
      const snapshot = tree.toObject();
      expect(stdioServersPatch.apply(tree, ctx).files).toEqual([]);
      expect(tree.toObject()).toEqual(snapshot);
    });
  }

  it("drift fails loudly (exit 3) naming the file and the shape: a renamed method, no implementations file, two session checks, a half-patched tree", () => {
    const renamed = new MemoryTree(syntheticServers("v2.2"));
    renamed.write(
      IMPL_FILE,
      renamed.read(IMPL_FILE)!.replace("  bulkImport: async (", "  importMany: async ("),
    );
    expectDrift(
      () => stdioServersPatch.apply(renamed, ctx),
      IMPL_FILE,
      /`bulkImport` as an async arrow function/,
    );

    const none = new MemoryTree({ [INSPECTOR_FILE]: syntheticServers("v2.2")[INSPECTOR_FILE]! });
    expectDrift(() => stdioServersPatch.apply(none, ctx), IMPL_FILE, /the file to exist/);

    const two = new MemoryTree(syntheticServers("v2.2"));
    two.write(INSPECTOR_FILE, `${two.read(INSPECTOR_FILE)}\nserverRouter.use(betterAuthMcpMiddleware);\n`);
    expectDrift(() => stdioServersPatch.apply(two, ctx), INSPECTOR_FILE, /found 2/);

    const half = new MemoryTree(syntheticServers("v2.4.13"));
    stdioServersPatch.apply(half, ctx);
    half.write(
      IMPL_FILE,
      half.read(IMPL_FILE)!.replace("await __databricksStdio.assertMayUpdateServer(input, userId);", ""),
    );
    expectDrift(() => stdioServersPatch.verify(half, ctx), IMPL_FILE, /first statement of `update`/);
  });

  it("is in the list prepare applies, before endpoint-identity", () => {
    const ids = PATCHES.map((p) => p.id);
    expect(ids).toContain(STDIO_SERVERS_PATCH_ID);
    expect(ids.indexOf(STDIO_SERVERS_PATCH_ID)).toBeLessThan(ids.indexOf("endpoint-identity"));
  });
});

/**
 * A package that runs the patched implementations and our module with tsx: our node_modules, plus
 * `@trpc/server` (MetaMCP's dependency at every tag, not ours) as a stand-in with TRPCError's documented
 * constructor `new TRPCError({ code, message })`.
 */
function packageDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "mmdb-stdio-"));
  writeFileSync(path.join(dir, "package.json"), `${JSON.stringify({ type: "module" })}\n`);
  const nm = path.join(dir, "node_modules");
  mkdirSync(nm);
  for (const entry of readdirSync(path.join(PROJECT_ROOT, "node_modules")))
    if (entry !== "@trpc") symlinkSync(path.join(PROJECT_ROOT, "node_modules", entry), path.join(nm, entry));
  const trpc = path.join(nm, "@trpc/server");
  mkdirSync(trpc, { recursive: true });
  writeFileSync(
    path.join(trpc, "package.json"),
    JSON.stringify({ name: "@trpc/server", type: "module", main: "index.js", types: "index.d.ts" }),
  );
  writeFileSync(
    path.join(trpc, "index.js"),
    "export class TRPCError extends Error { constructor(o) { super(o.message); this.name = 'TRPCError'; this.code = o.code; } }\n",
  );
  writeFileSync(
    path.join(trpc, "index.d.ts"),
    "export declare class TRPCError extends Error { code: string; constructor(o: { code: string; message?: string; cause?: unknown }); }\n",
  );
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

const TSX = path.join(PROJECT_ROOT, "node_modules/tsx/dist/cli.mjs");
const SP = "0a1b2c3d-0000-4000-8000-00000000abcd";
const HTTP_SERVER = "00000000-0000-4000-8000-000000000001";
const STDIO_SERVER = "00000000-0000-4000-8000-000000000002";
const WORKSPACE_SERVER = "00000000-0000-4000-8000-000000000003";
/** The app's workspace (DATABRICKS_HOST as the platform sets it: no scheme). */
const WORKSPACE_HOST = "adb-1234567890123456.7.azuredatabricks.net";
const WS = `https://${WORKSPACE_HOST}`;

interface Outcome {
  result?: { success: boolean };
  error?: { name: string; code: string; message: string };
  repositoryCalls: string[];
}

describe("who may make MetaMCP run a process, on the patched tRPC implementations (real PostgreSQL)", () => {
  let server: LakebaseLikePostgres;
  let url: string;
  let dir: string;

  beforeAll(async () => {
    server = await startLakebaseLikePostgres();
    await server.setPassword("role-password-1234", 3600);
    url = server.roleUrl("role-password-1234");
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`CREATE SCHEMA metamcp_app;
      CREATE TABLE metamcp_app.users (id text PRIMARY KEY, email text NOT NULL);
      CREATE TABLE metamcp_app.accounts (id text PRIMARY KEY, user_id text, provider_id text, account_id text);
      CREATE TABLE metamcp_app.mcp_servers (uuid uuid PRIMARY KEY, type text, user_id text, url text);
      INSERT INTO metamcp_app.users VALUES ('u-alice', 'Alice@corp.example'), ('u-bob', 'bob@corp.example'),
        ('u-mallory', 'manager@corp.example'), ('u-sp', '${SP}@sp.example');
      INSERT INTO metamcp_app.accounts VALUES ('a1', 'u-alice', 'databricks', 'alice@corp.example'),
        ('a2', 'u-bob', 'databricks', 'bob@corp.example'), ('a3', 'u-mallory', 'credential', 'u-mallory'),
        ('a4', 'u-sp', 'databricks', '${SP}');
      INSERT INTO metamcp_app.mcp_servers VALUES ('${HTTP_SERVER}', 'STREAMABLE_HTTP', 'u-bob', 'https://mcp.example/mcp'),
        ('${STDIO_SERVER}', 'STDIO', 'u-alice', NULL),
        ('${WORKSPACE_SERVER}', 'STREAMABLE_HTTP', 'u-alice', '${WS}/api/2.0/mcp/genie/space1');`);
    await c.end();
    const tree = new MemoryTree(syntheticServers("v2.4.13"));
    stdioServersPatch.apply(tree, ctx);
    const inspector = new MemoryTree(syntheticServers("v2.2"));
    stdioServersPatch.apply(inspector, ctx);
    dir = packageDir({
      "src/databricks-stdio-servers.ts": stdioServersModule("metamcp_app"),
      "src/trpc/mcp-servers.impl.ts": tree.read(IMPL_FILE)!,
      "src/routers/mcp-proxy/server.ts": inspector.read(INSPECTOR_FILE)!,
      // Stand-in for upstream's session check: it puts the signed-in user on the request, as upstream's does.
      "src/middleware/better-auth-mcp.middleware.ts":
        'export const betterAuthMcpMiddleware = (req: any, _res: any, next: () => void) => {\n  req.user = { id: req.headers["x-test-user"] };\n  next();\n};\n',
      "src/serve.ts": `import express from "express";
import serverRouter from "./routers/mcp-proxy/server";
const app = express();
app.use("/mcp-proxy/server", serverRouter);
const listener = app.listen(0, "127.0.0.1", () => {
  const address = listener.address();
  process.stdout.write(\`listening \${typeof address === "object" && address ? address.port : 0}\\n\`);
});
`,
      "src/db/index.ts":
        'import { drizzle } from "drizzle-orm/node-postgres";\nimport pg from "pg";\nexport const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });\nexport const db = drizzle(pool);\n',
      // The repository only records that it was reached: a refused call must never get there.
      "src/db/repositories.ts":
        "export const calls: string[] = [];\nexport const mcpServersRepository = {\n  create: async (v: unknown) => { calls.push('create'); return v; },\n  bulkCreate: async (v: unknown[]) => { calls.push('bulkCreate'); return v; },\n  update: async (v: unknown) => { calls.push('update'); return v; },\n  findAll: async () => [],\n};\n",
      "src/run.ts": `import { pool } from "./db/index";
import { calls } from "./db/repositories";
import { mcpServersImplementations as impl } from "./trpc/mcp-servers.impl";
const out = [];
for (const [op, input, user] of JSON.parse(process.argv[2] ?? "[]")) {
  calls.length = 0;
  try {
    out.push({ result: await (impl as any)[op](input, user), repositoryCalls: [...calls] });
  } catch (e: any) {
    out.push({ error: { name: e.name, code: e.code, message: e.message }, repositoryCalls: [...calls] });
  }
}
await pool.end();
process.stdout.write(JSON.stringify(out));
`,
    });
  }, 120_000);
  afterAll(async () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    await server?.stop();
  });

  function run(
    policy: string | undefined,
    cases: [string, unknown, string][],
    extra: Record<string, string> = {},
  ): Outcome[] {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      DATABASE_URL: url,
      METAMCP_APP_MANAGERS: `alice@corp.example, manager@corp.example,${SP},platform-admins`,
      DATABRICKS_HOST: WORKSPACE_HOST,
      ...extra,
    };
    if (policy) env.METAMCP_STDIO_SERVERS = policy;
    const stdout = execFileSync(process.execPath, [TSX, "src/run.ts", JSON.stringify(cases)], {
      cwd: dir,
      env,
      encoding: "utf8",
    });
    return JSON.parse(stdout) as Outcome[];
  }

  const stdio = { name: "shell", type: "STDIO", command: "sh", args: ["-c", "cat /proc/1/environ"] };
  const forbidden = (message: string) => ({
    error: { name: "TRPCError", code: "FORBIDDEN", message },
    repositoryCalls: [],
  });
  const allowed = (call: string) => ({ result: { success: true }, repositoryCalls: [call] });

  it("managers (the default): a non-manager is refused a STDIO server on create, bulk import and update, with MetaMCP's FORBIDDEN error; HTTP servers stay open", () => {
    const [createStdio, createUntyped, createHttp, updateIntoStdio, updateStdioEnv, bulk, bulkHttp] = run(
      undefined,
      [
        ["create", stdio, "u-bob"],
        ["create", { name: "untyped", command: "sh" }, "u-bob"],
        ["create", { name: "web", type: "STREAMABLE_HTTP", url: "https://mcp.example/mcp" }, "u-bob"],
        ["update", { uuid: HTTP_SERVER, type: "STDIO", command: "sh" }, "u-bob"],
        ["update", { uuid: STDIO_SERVER, env: { NODE_OPTIONS: "--require /tmp/x.js" } }, "u-bob"],
        [
          "bulkImport",
          { mcpServers: { web: { type: "SSE", url: "https://x" }, shell: { command: "sh" } } },
          "u-bob",
        ],
        ["bulkImport", { mcpServers: { web: { type: "SSE", url: "https://x" } } }, "u-bob"],
      ],
    );
    expect(createStdio).toMatchObject(forbidden(REFUSED_MANAGERS));
    expect(createUntyped).toMatchObject(forbidden(REFUSED_MANAGERS));
    expect(createHttp).toMatchObject(allowed("create"));
    expect(updateIntoStdio).toMatchObject(forbidden(REFUSED_MANAGERS));
    expect(updateStdioEnv).toMatchObject(forbidden(REFUSED_MANAGERS));
    expect(bulk).toMatchObject(forbidden(REFUSED_MANAGERS));
    expect(bulkHttp).toMatchObject(allowed("bulkCreate"));
  });

  it("managers: a listed email the Apps proxy signed in, and a listed service principal, may; the same email with only a password account may not", () => {
    const [alice, aliceBulk, aliceUpdate, sp, mallory, nobody] = run("managers", [
      ["create", stdio, "u-alice"],
      ["bulkImport", { mcpServers: { shell: { command: "sh" } } }, "u-alice"],
      ["update", { uuid: HTTP_SERVER, type: "STDIO", command: "sh" }, "u-alice"],
      ["create", stdio, "u-sp"],
      ["create", stdio, "u-mallory"],
      ["create", stdio, "u-nobody"],
    ]);
    expect(alice).toMatchObject(allowed("create"));
    expect(aliceBulk).toMatchObject(allowed("bulkCreate"));
    expect(aliceUpdate).toMatchObject(allowed("update"));
    expect(sp).toMatchObject(allowed("create"));
    expect(mallory).toMatchObject(forbidden(REFUSED_MANAGERS));
    expect(nobody).toMatchObject(forbidden(REFUSED_MANAGERS));
  });

  it("everyone allows anyone; off refuses everyone, managers included", () => {
    const [bob] = run("everyone", [["create", stdio, "u-bob"]]);
    expect(bob).toMatchObject(allowed("create"));
    const [alice, aliceBulk, http] = run("off", [
      ["create", stdio, "u-alice"],
      ["bulkImport", { mcpServers: { shell: { command: "sh" } } }, "u-alice"],
      ["create", { name: "web", type: "STREAMABLE_HTTP", url: "https://mcp.example/mcp" }, "u-alice"],
    ]);
    expect(alice).toMatchObject(forbidden(REFUSED_OFF));
    expect(aliceBulk).toMatchObject(forbidden(REFUSED_OFF));
    expect(http).toMatchObject(allowed("create"));
  });

  it("app-identity workspace servers (METAMCP_DATABRICKS_APP_IDENTITY=managers, the default): Bob is FORBIDDEN on create, bulk import and update, however the URL is spelled; a manager may; per-person and other hosts pass", () => {
    const server = (u: string, type = "STREAMABLE_HTTP") => ({ name: "dbx", type, url: u });
    const [genie, spelled, spaced, sse, perPerson, elsewhere, bulk, updateTo, updateRename, toUser] = run(
      undefined,
      [
        ["create", server(`${WS}/api/2.0/mcp/genie/space1`), "u-bob"],
        ["create", server(`HTTPS://ADB-1234567890123456.7.AzureDatabricks.net:443/api/2.0/mcp/sql`), "u-bob"],
        ["create", server(`  ${WS}/api/2.0/mcp/functions/main/tools`), "u-bob"],
        ["create", server(`${WS}/api/2.0/mcp/sql`, "SSE"), "u-bob"],
        ["create", server(`${WS}/api/2.0/mcp/genie/space1#identity=user`), "u-bob"],
        ["create", server("https://evil.example/api/2.0/mcp/genie"), "u-bob"],
        [
          "bulkImport",
          { mcpServers: { ok: { type: "SSE", url: "https://x" }, dbx: server(`${WS}/api/2.0/mcp/sql`) } },
          "u-bob",
        ],
        ["update", { uuid: HTTP_SERVER, type: "STREAMABLE_HTTP", url: `${WS}/api/2.0/mcp/sql` }, "u-bob"],
        ["update", { uuid: WORKSPACE_SERVER, name: "renamed" }, "u-bob"],
        ["update", { uuid: WORKSPACE_SERVER, url: `${WS}/api/2.0/mcp/genie/space1#identity=user` }, "u-bob"],
      ],
    );
    for (const [what, o] of Object.entries({ genie, spelled, spaced, sse, bulk, updateTo, updateRename }))
      expect(o, what).toMatchObject(forbidden(REFUSED_APP_IDENTITY_MANAGERS));
    expect(perPerson).toMatchObject(allowed("create"));
    expect(elsewhere).toMatchObject(allowed("create"));
    expect(toUser).toMatchObject(allowed("update"));
    const [alice, aliceUpdate, sp] = run(undefined, [
      ["create", server(`${WS}/api/2.0/mcp/genie/space1`), "u-alice"],
      ["update", { uuid: WORKSPACE_SERVER, name: "renamed" }, "u-alice"],
      ["create", server(`${WS}/api/2.0/mcp/sql`), "u-sp"],
    ]);
    expect(alice).toMatchObject(allowed("create"));
    expect(aliceUpdate).toMatchObject(allowed("update"));
    expect(sp).toMatchObject(allowed("create"));
  });

  it("METAMCP_DATABRICKS_APP_IDENTITY=everyone lets anyone; off refuses everyone, managers included; independent of METAMCP_STDIO_SERVERS", () => {
    const genie = { name: "dbx", type: "STREAMABLE_HTTP", url: `${WS}/api/2.0/mcp/genie/space1` };
    const [bob] = run("off", [["create", genie, "u-bob"]], { METAMCP_DATABRICKS_APP_IDENTITY: "everyone" });
    expect(bob).toMatchObject(allowed("create"));
    const [alice, stdioStill] = run(
      "everyone",
      [
        ["create", genie, "u-alice"],
        ["create", stdio, "u-bob"],
      ],
      { METAMCP_DATABRICKS_APP_IDENTITY: "off" },
    );
    expect(alice).toMatchObject(forbidden(REFUSED_APP_IDENTITY_OFF));
    expect(stdioStill).toMatchObject(allowed("create"));
  });

  it("the inspector proxy: a non-manager's ?transportType=STDIO is refused 403 before any process starts; a manager's passes", async () => {
    const child = spawn(process.execPath, [TSX, "src/serve.ts"], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? "",
        DATABASE_URL: url,
        METAMCP_APP_MANAGERS: "alice@corp.example",
        BETTER_AUTH_SECRET: "backend-secret-value-0123456789",
        DATABRICKS_HOST: WORKSPACE_HOST,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error("the inspector server did not start in 60 s")),
          60_000,
        );
        let out = "";
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          const m = /listening (\d+)/.exec(out);
          if (m) {
            clearTimeout(timer);
            resolve(Number(m[1]));
          }
        });
        child.once("exit", (code) => reject(new Error(`the inspector server exited ${code}`)));
      });
      const ask = (user: string) =>
        fetch(`http://127.0.0.1:${port}/mcp-proxy/server/stdio?transportType=STDIO&command=sh`, {
          headers: { "x-test-user": user },
        });
      const bob = await ask("u-bob");
      expect(bob.status).toBe(403);
      expect(await bob.json()).toEqual({ error: "Forbidden", message: REFUSED_MANAGERS });
      const alice = await ask("u-alice");
      expect(alice.status).toBe(200);
      expect(((await alice.json()) as { command: string }).command).toBe("sh");
      // The raw-URL inspector on an app-identity workspace URL: managers only, too.
      const inspect = (user: string, target: string) =>
        fetch(
          `http://127.0.0.1:${port}/mcp-proxy/server/mcp?transportType=STREAMABLE_HTTP&url=${encodeURIComponent(target)}`,
          { headers: { "x-test-user": user } },
        );
      const bobWs = await inspect("u-bob", `${WS}/api/2.0/mcp/sql`);
      expect(bobWs.status).toBe(403);
      expect(await bobWs.json()).toEqual({ error: "Forbidden", message: REFUSED_APP_IDENTITY_MANAGERS });
      // Past the guard (the synthetic router has no such route: 404, not 403).
      expect((await inspect("u-alice", `${WS}/api/2.0/mcp/sql`)).status).toBe(404);
      expect((await inspect("u-bob", "https://mcp.example/mcp")).status).toBe(404);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("the module type-checks under strict TypeScript against the real drizzle-orm and pg types", () => {
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
        files: ["src/databricks-stdio-servers.ts"],
      }),
    );
    expect(() => execFileSync(process.execPath, [TSC, "-p", dir], { encoding: "utf8" })).not.toThrow();
  });
});
