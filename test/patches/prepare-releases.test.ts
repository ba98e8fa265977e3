import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKEND_INDEX_FILE } from "../../src/patches/backend-loopback.js";
import { DB_INDEX_FILE, PASSWORD_FILE_VAR } from "../../src/patches/db-pool-credentials.js";
import { BACKEND_ENTRY_FILE, UNSUPPORTED_NOTE } from "../../src/patches/endpoint-identity.js";
import {
  ENDPOINT_IDENTITY_MODULE_FILE,
  SCHEMA_MODULE_FILE,
} from "../../src/patches/endpoint-identity-module.js";
import { FRONTEND_MIDDLEWARE_FILE, ORIGIN_FORM_NOTE } from "../../src/patches/frontend-backend-port.js";
import type { PrepareManifest } from "../../src/upstream/manifest.js";
import { runCli } from "../support/cli.js";
import {
  BACKEND_INDEX_FORMS,
  createSyntheticUpstream,
  DB_INDEX_FORMS,
  FRONTEND_MIDDLEWARE_FORMS,
  MIDDLEWARE_FORMS,
  type SyntheticUpstream,
  syntheticMiddleware,
} from "../support/synthetic-upstream.js";
import { tempDir } from "../support/tmp.js";

/**
 * The patches through the real CLI: `prepare` once per synthetic release (each release has its own
 * upstream shapes, test/support/synthetic-upstream.ts), every patch's result checked on the same runs;
 * then one upstream per patch with a shape that patch must refuse. The shapes one by one are in each
 * patch's own test file; what prepare prints is in test/acceptance/prepare/.
 */
const REFS = ["v2.0.0", "v2.1.0", "v2.2.0", "main"] as const;
const LABEL: Record<string, string> = { main: "head" };

describe("prepare on each synthetic release: every patch applied where its shape is", () => {
  let upstream: SyntheticUpstream;
  let root: string;
  const prepared: Record<string, { manifest: PrepareManifest; buildDir: string }> = {};
  beforeAll(async () => {
    upstream = createSyntheticUpstream();
    root = mkdtempSync(path.join(os.tmpdir(), "mmdb-patches-"));
    for (const ref of REFS) {
      const buildDir = path.join(root, ref);
      const r = await runCli(
        ["--json", "prepare", "--repo", upstream.url, "--ref", ref, "--build-dir", buildDir],
        { cwd: root, env: { METAMCP_CACHE_DIR: path.join(root, ".cache") } },
      );
      if (r.exitCode !== 0) throw new Error(`prepare ${ref} exited ${r.exitCode}: ${r.stderr}`);
      prepared[ref] = { manifest: JSON.parse(r.stdout) as PrepareManifest, buildDir };
    }
  });
  afterAll(() => {
    upstream?.cleanup();
    if (root) rmSync(root, { recursive: true, force: true });
  });
  const patchOf = (ref: string, id: string) => prepared[ref]!.manifest.patches.find((p) => p.id === id);
  const read = (ref: string, file: string) => readFileSync(path.join(prepared[ref]!.buildDir, file), "utf8");

  it("backend-loopback: v2.0.0 (PORT), v2.1.0 (12009), v2.2.0 (async callback), main (inside start())", () => {
    for (const ref of REFS) {
      expect(patchOf(ref, "backend-loopback")?.files, ref).toEqual([{ path: BACKEND_INDEX_FILE, edits: 1 }]);
      const form = BACKEND_INDEX_FORMS[LABEL[ref] ?? ref]!;
      const port = form === "port-var" ? "PORT" : "12009";
      expect(read(ref, BACKEND_INDEX_FILE), `${ref} (${form})`).toMatch(
        new RegExp(
          `app\\.listen\\(Number\\(process\\.env\\.METAMCP_BACKEND_PORT\\) \\|\\| ${port}, "127\\.0\\.0\\.1", (async )?\\(\\) => \\{`,
        ),
      );
    }
  });

  it("frontend-backend-port: the middleware's backend URL from the variable (v2.1.0 on); v2.0.0's origin form noted", () => {
    for (const ref of REFS) {
      const rec = patchOf(ref, "frontend-backend-port")!;
      if (FRONTEND_MIDDLEWARE_FORMS[LABEL[ref] ?? ref] === "origin") {
        expect(rec, ref).toMatchObject({ files: [], note: ORIGIN_FORM_NOTE });
        expect(read(ref, FRONTEND_MIDDLEWARE_FILE), ref).toContain("baseURL: request.nextUrl.origin");
      } else {
        expect(rec.files, ref).toEqual([{ path: FRONTEND_MIDDLEWARE_FILE, edits: 1 }]);
        expect(rec.note, ref).toBeUndefined();
        expect(read(ref, FRONTEND_MIDDLEWARE_FILE), ref).toContain(
          // biome-ignore lint/suspicious/noTemplateCurlyInString: the patched source text
          "baseURL: `http://localhost:${Number(process.env.METAMCP_BACKEND_PORT) || 12009}`",
        );
      }
    }
    expect(FRONTEND_MIDDLEWARE_FORMS["v2.0.0"]).toBe("origin");
  });

  it("db-pool-credentials: the URL form (v2.0.0, v2.1.0) and the Pool form (v2.2.0, main)", () => {
    for (const ref of REFS) {
      const edits = DB_INDEX_FORMS[LABEL[ref] ?? ref]!.startsWith("drizzle-url") ? 3 : 2;
      expect(patchOf(ref, "db-pool-credentials")?.files, ref).toEqual([{ path: DB_INDEX_FILE, edits }]);
      expect(read(ref, DB_INDEX_FILE), ref).toContain(PASSWORD_FILE_VAR);
    }
  });

  it("endpoint-identity: v2.2.0 on patched and recorded; before v2.2.0 prepared, the manifest saying the release lacks it", () => {
    for (const ref of ["v2.2.0", "main"]) {
      const rec = patchOf(ref, "endpoint-identity")!;
      expect(rec.note, ref).toBeUndefined();
      expect(rec.files.map((f) => f.path).sort(), ref).toEqual(
        [
          `apps/backend/src/middleware/${MIDDLEWARE_FORMS[LABEL[ref] ?? ref]}.middleware.ts`,
          BACKEND_ENTRY_FILE,
          SCHEMA_MODULE_FILE,
        ].sort(),
      );
      expect(read(ref, ENDPOINT_IDENTITY_MODULE_FILE), ref).toContain("acceptDatabricksIdentity");
    }
    for (const ref of ["v2.0.0", "v2.1.0"]) {
      expect(patchOf(ref, "endpoint-identity"), ref).toMatchObject({
        files: [{ path: SCHEMA_MODULE_FILE }],
        note: UNSUPPORTED_NOTE,
      });
    }
  });
  it("databricks-tools: on every release our fetch wrapper is copied in and is the backend entry's first import", () => {
    for (const ref of REFS) {
      // The import and the request-context mount (these synthetic releases have no idle pool file).
      expect(patchOf(ref, "databricks-tools")?.files, ref).toEqual([{ path: BACKEND_INDEX_FILE, edits: 2 }]);
      const entry = read(ref, BACKEND_INDEX_FILE);
      const first = entry.split("\n").find((l) => l.trim() && !l.trim().startsWith("//"));
      expect(first, ref).toBe('import "./databricks-tools";');
      expect(entry, ref).toContain("app.use(__databricksToolsContext);");
      expect(read(ref, "apps/backend/src/databricks-tools.ts"), ref).toContain("installDatabricksToolsFetch");
    }
  });
});

describe("prepare stops with exit 3 on a shape a patch does not know, naming the file and what it expected", () => {
  const middleware = "apps/backend/src/middleware/api-key-auth.middleware.ts";
  const DRIFTS: {
    patch: string;
    file: string;
    expected: string;
    make: () => SyntheticUpstream;
  }[] = [
    {
      patch: "backend-loopback",
      file: BACKEND_INDEX_FILE,
      expected: "`<app>.listen(<port>, <callback>)`",
      make: () => createSyntheticUpstream({ backendIndexForm: () => "own-host" }),
    },
    {
      patch: "db-pool-credentials",
      file: DB_INDEX_FILE,
      expected: "`drizzle(process.env.DATABASE_URL, { schema })` (MetaMCP v2.0.0–v2.4.5)",
      make: () => createSyntheticUpstream({ dbIndexForm: () => "unknown" }),
    },
    {
      patch: "endpoint-identity",
      file: middleware,
      expected: "export const authenticateApiKey = async (req, res, next)",
      make: () =>
        createSyntheticUpstream({
          extraFiles: () => ({
            [middleware]: syntheticMiddleware("api-key-auth")[middleware]!.replace(
              "export const authenticateApiKey = async",
              "export const checkKey = async",
            ),
          }),
        }),
    },
  ];

  it.each(DRIFTS)("$patch", async ({ patch, file, expected, make }) => {
    const upstream = make();
    try {
      const cwd = tempDir();
      const r = await runCli(["prepare", "--repo", upstream.url, "--ref", "v2.2.0", "--build-dir", "out"], {
        cwd,
        env: { METAMCP_CACHE_DIR: path.join(cwd, ".cache") },
      });
      expect(r.exitCode, r.stderr).toBe(3);
      expect(r.stderr).toContain(`upstream drift in ${file} (MetaMCP v2.2.0, patch ${patch})`);
      expect(r.stderr).toContain(expected);
      expect(existsSync(path.join(cwd, "out"))).toBe(false);
    } finally {
      upstream.cleanup();
    }
  });
});
