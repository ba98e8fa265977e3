import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ENDPOINT_SERVER_NOTE,
  ENDPOINTS_PAGE_FILES,
  ENDPOINTS_ZOD_FILE,
  endpointServerDefaultPatch,
  KNOWN_PAGE,
  KNOWN_ZOD,
  NOTE_MARKER,
  patchEndpointsPageText,
  patchEndpointsZodText,
  verifyEndpointsPageText,
  verifyEndpointsZodText,
} from "../../src/patches/endpoint-server-default.js";
import { MemoryTree } from "../../src/patches/tree.js";
import type { PrepareManifest } from "../../src/upstream/manifest.js";
import { runCli } from "../support/cli.js";
import {
  createSyntheticUpstream,
  ENDPOINTS_PAGE_PATHS,
  SYNTHETIC_ENDPOINTS_ZOD,
  type SyntheticUpstream,
  syntheticEndpointsPage,
} from "../support/synthetic-upstream.js";
import { driftOf, linkedPackageDir, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;
const pageOf = (form: "v2.0" | "v2.4") => syntheticEndpointsPage(form)[ENDPOINTS_PAGE_PATHS[form]]!;
const trueCount = (text: string) => (text.match(/createMcpServer: true/g) ?? []).length;
const falseCount = (text: string) => (text.match(/createMcpServer: false/g) ?? []).length;

describe("endpoint-server-default patch: the form's 'create an MCP server' is off, with the reason shown", () => {
  it.each([
    ["v2.0", 2],
    ["v2.4", 3],
  ] as const)(
    "%s page: every form value turned off, the note under the explanation, verified, idempotent",
    (form, n) => {
      const text = pageOf(form);
      const out = patchEndpointsPageText(ENDPOINTS_PAGE_PATHS[form], text, ctx);
      expect(out.edits).toBe(n + 1);
      expect(trueCount(out.text)).toBe(0);
      expect(falseCount(out.text)).toBe(n);
      // The note comes right after upstream's explanation, as its own <p>, carrying the reason in words.
      const lines = out.text.split("\n");
      const explanation = lines.findIndex((l) =>
        l.includes("It makes a server that points at this endpoint."),
      );
      expect(lines[explanation + 1]).toContain(NOTE_MARKER);
      expect(lines[explanation + 1]).toContain(JSON.stringify(ENDPOINT_SERVER_NOTE));
      expect(ENDPOINT_SERVER_NOTE).toContain("Databricks Apps proxy");
      expect(ENDPOINT_SERVER_NOTE).toContain("Connection Error");
      // Nothing else of upstream's changed.
      expect(
        out.text
          .replace(`\n${lines[explanation + 1]}`, "")
          .replaceAll("createMcpServer: false", "createMcpServer: true"),
      ).toBe(text);
      expect(() => verifyEndpointsPageText(ENDPOINTS_PAGE_PATHS[form], out.text, ctx)).not.toThrow();
      expect(patchEndpointsPageText(ENDPOINTS_PAGE_PATHS[form], out.text, ctx)).toEqual({
        text: out.text,
        edits: 0,
      });
    },
  );

  it("the tRPC input's default is off too: a create call without the field makes no server (real zod)", async () => {
    const out = patchEndpointsZodText(ENDPOINTS_ZOD_FILE, SYNTHETIC_ENDPOINTS_ZOD, ctx);
    expect(out.edits).toBe(1);
    expect(() => verifyEndpointsZodText(ENDPOINTS_ZOD_FILE, out.text, ctx)).not.toThrow();
    expect(patchEndpointsZodText(ENDPOINTS_ZOD_FILE, out.text, ctx)).toEqual({ text: out.text, edits: 0 });
    const parse = async (zodSource: string) => {
      const dir = linkedPackageDir("mmdb-endpoint-zod-", {
        "endpoints.zod.ts": zodSource,
        "probe.ts": `import { CreateEndpointRequestSchema } from "./endpoints.zod.ts";\nconsole.log(JSON.stringify(CreateEndpointRequestSchema.parse({ name: "ep" })));\n`,
      });
      const r = await execa(process.execPath, ["--import", "tsx", "probe.ts"], { cwd: dir, reject: false });
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as { createMcpServer: boolean };
    };
    expect((await parse(SYNTHETIC_ENDPOINTS_ZOD)).createMcpServer).toBe(true); // upstream's: a server per endpoint
    expect((await parse(out.text)).createMcpServer).toBe(false);
  }, 60_000);

  it("shapes it does not know stop with drift (exit 3), naming the file and what it expected", () => {
    const page = pageOf("v2.4");
    const file = ENDPOINTS_PAGE_FILES[0];
    const pageCases: [string, string][] = [
      [page.replaceAll('id="createMcpServer"', 'id="autoServer"'), 'no `<Checkbox id="createMcpServer" />`'],
      [
        page.replaceAll("createMcpServer: true", "createMcpServer: defaults.server"),
        "`createMcpServer: defaults.server`",
      ],
      [page.replaceAll("      createMcpServer: true,\n", ""), "no `createMcpServer:` form value"],
    ];
    for (const [text, found] of pageCases) {
      const err = driftOf(() => patchEndpointsPageText(file, text, ctx));
      expect(err.message).toContain(
        `upstream drift in ${file} (MetaMCP v9.9.9, patch endpoint-server-default)`,
      );
      expect(err.message).toContain(KNOWN_PAGE);
      expect(err.message).toContain(found);
    }
    const zodCases: [string, string][] = [
      [
        SYNTHETIC_ENDPOINTS_ZOD.replace(
          "createMcpServer: z.boolean().default(true)",
          "createMcpServer: z.boolean().optional()",
        ),
        "found `createMcpServer: z.boolean().optional()`",
      ],
      [
        SYNTHETIC_ENDPOINTS_ZOD.replace("CreateEndpointRequestSchema", "CreateEndpointInput"),
        "no `CreateEndpointRequestSchema",
      ],
    ];
    for (const [text, found] of zodCases) {
      const err = driftOf(() => patchEndpointsZodText(ENDPOINTS_ZOD_FILE, text, ctx));
      expect(err.message).toContain(KNOWN_ZOD);
      expect(err.message).toContain(found);
    }
    // Both page paths, or neither: which is the form is not ours to guess.
    const both = new MemoryTree({
      [ENDPOINTS_PAGE_FILES[0]]: page,
      [ENDPOINTS_PAGE_FILES[1]]: page,
      [ENDPOINTS_ZOD_FILE]: SYNTHETIC_ENDPOINTS_ZOD,
    });
    expect(driftOf(() => endpointServerDefaultPatch.apply(both, ctx)).message).toContain("found 2");
    expect(
      driftOf(() =>
        endpointServerDefaultPatch.apply(
          new MemoryTree({ [ENDPOINTS_ZOD_FILE]: SYNTHETIC_ENDPOINTS_ZOD }),
          ctx,
        ),
      ).message,
    ).toContain("found 0");
  });

  it("verify refuses a tree where a default came back on, the note went, or the page no longer parses", () => {
    const file = ENDPOINTS_PAGE_FILES[0];
    const patched = patchEndpointsPageText(file, pageOf("v2.4"), ctx).text;
    expect(driftOf(() => verifyEndpointsPageText(file, pageOf("v2.4"), ctx)).message).toContain("no note");
    expect(
      driftOf(() =>
        verifyEndpointsPageText(
          file,
          patched.replace("createMcpServer: false", "createMcpServer: true"),
          ctx,
        ),
      ).message,
    ).toContain("found form values [true, false, false]");
    expect(
      driftOf(() =>
        verifyEndpointsPageText(
          file,
          patched.replace("export default function", "export default functio"),
          ctx,
        ),
      ).message,
    ).toContain("valid TypeScript");
    expect(
      driftOf(() => verifyEndpointsZodText(ENDPOINTS_ZOD_FILE, SYNTHETIC_ENDPOINTS_ZOD, ctx)).message,
    ).toContain("found `createMcpServer: z.boolean().default(true)`");
  });
});

/**
 * Upstream's real files, read from the mirror when this machine has one (never copied into the repo): every
 * `v2.*` tag and main must patch and verify, with the number of form values upstream has there.
 */
const MIRROR = process.env.METAMCP_MIRROR_GIT_DIR ?? "/work/.mirror/metatool-ai+metamcp/repo";
const mirrorSkip = existsSync(MIRROR) ? undefined : `skipped: needs the upstream mirror at ${MIRROR}`;

describe("on MetaMCP's real code", () => {
  it.skipIf(!!mirrorSkip)(
    `every v2.* tag and main patch and verify${mirrorSkip ? ` (${mirrorSkip})` : ""}`,
    () => {
      const git = (...args: string[]) =>
        execFileSync("git", ["--git-dir", MIRROR, ...args], {
          encoding: "utf8",
          maxBuffer: 64 * 1024 * 1024,
        });
      const refs = [...git("tag", "--list", "v2.*").split("\n").filter(Boolean), "main"];
      const show = (ref: string, file: string) => {
        try {
          return git("cat-file", "blob", `${ref}:${file}`);
        } catch {
          return undefined;
        }
      };
      const results: string[] = [];
      for (const ref of refs) {
        const files: Record<string, string> = {};
        for (const f of [...ENDPOINTS_PAGE_FILES, ENDPOINTS_ZOD_FILE]) {
          const text = show(ref, f);
          if (text !== undefined) files[f] = text;
        }
        const tree = new MemoryTree(files);
        const rctx = { ...ctx, upstreamRef: ref };
        const report = endpointServerDefaultPatch.apply(tree, rctx);
        endpointServerDefaultPatch.verify(tree, rctx);
        const page = report.files.find((f) => f.path !== ENDPOINTS_ZOD_FILE)!;
        results.push(`${ref}:${page.edits}`);
        expect(trueCount(tree.read(page.path)!), ref).toBe(0);
      }
      expect(results.length).toBeGreaterThanOrEqual(48);
      // 2 form values + the note before v2.4.0, 3 + the note from v2.4.0 on.
      expect(results.filter((r) => !/:(3|4)$/.test(r))).toEqual([]);
    },
    120_000,
  );
});

describe("prepare through the real CLI", () => {
  let upstream: SyntheticUpstream;
  let root: string;
  beforeAll(() => {
    upstream = createSyntheticUpstream();
    root = mkdtempSync(path.join(os.tmpdir(), "mmdb-endpoint-default-"));
  });
  afterAll(() => {
    upstream?.cleanup();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it.each([
    ["v2.0.0", "v2.0", 3],
    ["main", "v2.4", 4],
  ] as const)(
    "%s: the prepared form makes no server by default and says why; the manifest records it",
    async (ref, form, edits) => {
      const buildDir = path.join(root, ref);
      const r = await runCli(
        ["--json", "prepare", "--repo", upstream.url, "--ref", ref, "--build-dir", buildDir],
        {
          cwd: root,
          env: { METAMCP_CACHE_DIR: path.join(root, ".cache") },
        },
      );
      expect(r.exitCode, r.stderr).toBe(0);
      const manifest = JSON.parse(r.stdout) as PrepareManifest;
      const rec = manifest.patches.find((p) => p.id === "endpoint-server-default");
      expect(rec?.files).toEqual(
        [
          { path: ENDPOINTS_PAGE_PATHS[form], edits },
          { path: ENDPOINTS_ZOD_FILE, edits: 1 },
        ].sort((a, b) => a.path.localeCompare(b.path)),
      );
      const page = readFileSync(path.join(buildDir, ENDPOINTS_PAGE_PATHS[form]), "utf8");
      expect(trueCount(page)).toBe(0);
      expect(page).toContain(NOTE_MARKER);
      expect(readFileSync(path.join(buildDir, ENDPOINTS_ZOD_FILE), "utf8")).toContain(
        "createMcpServer: z.boolean().default(false)",
      );
    },
    120_000,
  );
});
