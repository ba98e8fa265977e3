import { describe, expect, it } from "vitest";
import {
  FRONTEND_MIDDLEWARE_FILE,
  frontendBackendPortPatch,
  ORIGIN_FORM_NOTE,
  patchMiddlewareText,
  verifyMiddlewareText,
} from "../../src/patches/frontend-backend-port.js";
import { BACKEND_PORT_VARIABLE } from "../../src/patches/instance-ports.js";
import { MemoryTree } from "../../src/patches/tree.js";
import { RUNTIME_VARIABLES } from "../../src/runtime/env.js";
import { syntheticFrontendMiddleware } from "../support/synthetic-upstream.js";
import { driftOf, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;
const FILE = FRONTEND_MIDDLEWARE_FILE;
// biome-ignore lint/suspicious/noTemplateCurlyInString: the patched source text, not a template of ours
const OURS = "baseURL: `http://localhost:${Number(process.env.METAMCP_BACKEND_PORT) || 12009}`,";

/** Runs the patched middleware's base URL expression as Next's middleware would, with `env` as process.env. */
function baseUrlWith(patched: string, env: Record<string, string>): string {
  const expr = /baseURL: (`[^`]+`)/.exec(patched)![1]!;
  return new Function("process", `return ${expr};`)({ env }) as string;
}

describe("frontend-backend-port patch: Next's middleware asks the backend where the runtime put it", () => {
  it('v2.0.6 on (`baseURL: "http://localhost:12009"`): the port from METAMCP_BACKEND_PORT, else 12009; verified, idempotent', () => {
    const text = syntheticFrontendMiddleware("backend-url");
    const out = patchMiddlewareText(FILE, text, ctx);
    expect(out).toMatchObject({ edits: 1 });
    expect(out.note).toBeUndefined();
    expect(out.text.split("\n").map((l) => l.trim())).toContain(OURS);
    expect(out.text.replace(OURS.slice(9, -1), '"http://localhost:12009"')).toBe(text);
    expect(baseUrlWith(out.text, {})).toBe("http://localhost:12009");
    expect(baseUrlWith(out.text, { METAMCP_BACKEND_PORT: "21345" })).toBe("http://localhost:21345");
    expect(() => verifyMiddlewareText(FILE, out.text, ctx)).not.toThrow();
    expect(patchMiddlewareText(FILE, out.text, ctx)).toEqual({ text: out.text, edits: 0 });
  });

  it("the variable is the runtime's own (what it passes both children)", () => {
    expect(BACKEND_PORT_VARIABLE).toBe("METAMCP_BACKEND_PORT");
    expect(RUNTIME_VARIABLES).toContain(BACKEND_PORT_VARIABLE);
  });

  it("v2.0.0–v2.0.5 (`baseURL: request.nextUrl.origin`): unchanged, with the note that says one instance per machine", () => {
    const tree = new MemoryTree({ [FILE]: syntheticFrontendMiddleware("origin") });
    const r = frontendBackendPortPatch.apply(tree, ctx);
    expect(r).toEqual({ files: [], note: ORIGIN_FORM_NOTE });
    expect(tree.read(FILE)).toBe(syntheticFrontendMiddleware("origin"));
    expect(() => frontendBackendPortPatch.verify(tree, ctx)).not.toThrow();
  });

  it("a port in another form, or a longer URL, stops with drift (exit 3)", () => {
    const base = syntheticFrontendMiddleware("backend-url");
    for (const [text, found] of [
      // biome-ignore lint/suspicious/noTemplateCurlyInString: upstream's source text, not a template of ours
      [base.replace('"http://localhost:12009"', "`http://localhost:${12009}`"), "v2.0.0–v2.0.5"],
      [
        base.replace('"http://localhost:12009"', '"http://localhost:12009/api"'),
        'found "http://localhost:12009/api"',
      ],
    ] as const) {
      const err = driftOf(() => patchMiddlewareText(FILE, text, ctx));
      expect(err.message).toContain(
        `upstream drift in ${FILE} (MetaMCP v9.9.9, patch frontend-backend-port)`,
      );
      expect(err.message).toContain(found);
    }
  });

  it("verify refuses a middleware still asking localhost:12009, or one that no longer parses", () => {
    const unpatched = syntheticFrontendMiddleware("backend-url");
    expect(driftOf(() => verifyMiddlewareText(FILE, unpatched, ctx)).message).toContain(
      'taken from METAMCP_BACKEND_PORT; found "http://localhost:12009"',
    );
    const patched = patchMiddlewareText(FILE, unpatched, ctx).text;
    expect(
      driftOf(() => verifyMiddlewareText(FILE, patched.replace("export async", "export async {"), ctx))
        .message,
    ).toContain("valid TypeScript");
  });
});
