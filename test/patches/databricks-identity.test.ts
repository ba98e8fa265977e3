import { describe, expect, it } from "vitest";
import {
  AUTH_FILE,
  databricksIdentityPatch,
  IDENTITY_MODULE_FILE,
  patchAuthText,
  verifyAuthText,
} from "../../src/patches/databricks-identity.js";
import { MemoryTree } from "../../src/patches/index.js";
import { type AuthForm, syntheticAuth } from "../support/synthetic-upstream.js";
import { driftOf, IDENTITY_MODULE, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;
const MODULE = IDENTITY_MODULE;

const KNOWN: { form: AuthForm; sso: number }[] = [
  { form: "no-plugins", sso: 0 },
  { form: "plugins", sso: 0 },
  { form: "sso-hook", sso: 1 },
];

describe("databricks-identity patch: every auth.ts shape upstream has had", () => {
  it.each(KNOWN)(
    "$form: our plugin joins betterAuth's plugins, the instance is bound; verified, idempotent",
    ({ form, sso }) => {
      const text = syntheticAuth(form);
      const out = patchAuthText(AUTH_FILE, text, ctx);
      expect(out.edits).toBe(4);
      expect(out.pluginsAdded).toBe(form === "no-plugins");
      expect(() => verifyAuthText(AUTH_FILE, out.text, ctx)).not.toThrow();
      expect(out.text).toContain(
        'import { bindDatabricksIdentity, databricksIdentity } from "./databricks-identity";',
      );
      expect(out.text).toMatch(/export const auth = bindDatabricksIdentity\(betterAuth\(\{[\s\S]*\}\)\);/);
      if (form === "no-plugins") expect(out.text).toContain("plugins: [databricksIdentity()],");
      else
        expect(out.text).toMatch(
          /\.\.\.\(oidcProviders\.length > 0 \? \[genericOAuth\(\{ config: oidcProviders \}\)\] : \[\]\),\n\s+databricksIdentity\(\),\n\s+\]/,
        );
      // Upstream's own options are all still there.
      for (const kept of ["emailAndPassword", "databaseHooks", "drizzleAdapter(db"])
        expect(out.text).toContain(kept);
      expect(patchAuthText(AUTH_FILE, out.text, ctx).edits).toBe(0);

      const tree = new MemoryTree({ [AUTH_FILE]: text, [IDENTITY_MODULE_FILE]: MODULE });
      const result = databricksIdentityPatch.apply(tree, ctx);
      expect(result.files).toEqual([{ path: AUTH_FILE, edits: 4 }]);
      expect(result.counts).toEqual({ "SSO-aware sign-up hook": sso });
      databricksIdentityPatch.verify(tree, ctx);
      expect(databricksIdentityPatch.apply(tree, ctx).files).toEqual([]);
    },
  );

  it("an empty plugins array gets ours as its only element", () => {
    const text = syntheticAuth("plugins").replace(/plugins: \[[\s\S]*?\n {2}\],/, "plugins: [],");
    const out = patchAuthText(AUTH_FILE, text, ctx);
    expect(out.text).toContain("plugins: [databricksIdentity()],");
    verifyAuthText(AUTH_FILE, out.text, ctx);
  });

  it("auth built another way is drift (exit 3) naming the file and the form it expects", () => {
    const err = driftOf(() => patchAuthText(AUTH_FILE, syntheticAuth("unknown"), ctx));
    expect(err.exitCode).toBe(3);
    expect(err.message).toContain(AUTH_FILE);
    expect(err.message).toContain("MetaMCP v9.9.9");
    expect(err.message).toContain("export const auth = betterAuth({ ... })");
  });

  it("plugins that are not an array literal are drift", () => {
    const text = syntheticAuth("plugins").replace(/plugins: \[[\s\S]*?\n {2}\],/, "plugins: somePlugins,");
    expect(driftOf(() => patchAuthText(AUTH_FILE, text, ctx)).message).toContain(
      "`plugins` is plugins: somePlugins",
    );
  });

  it("verify fails when an edit was lost, or our module is missing from the tree", () => {
    const patched = patchAuthText(AUTH_FILE, syntheticAuth("sso-hook"), ctx).text;
    expect(driftOf(() => verifyAuthText(AUTH_FILE, syntheticAuth("sso-hook"), ctx)).message).toContain(
      "the import",
    );
    const unbound = patched
      .replace("bindDatabricksIdentity(betterAuth(", "betterAuth(")
      .replace(/\}\)\);\n/, "});\n");
    expect(driftOf(() => verifyAuthText(AUTH_FILE, unbound, ctx)).message).toContain(
      "bindDatabricksIdentity(",
    );
    const noPlugin = patched.replace("databricksIdentity(),", "");
    expect(driftOf(() => verifyAuthText(AUTH_FILE, noPlugin, ctx)).message).toContain(
      "`databricksIdentity()` in betterAuth's plugins",
    );
    const tree = new MemoryTree({ [AUTH_FILE]: patched });
    expect(driftOf(() => databricksIdentityPatch.verify(tree, ctx)).message).toContain(IDENTITY_MODULE_FILE);
    tree.write(
      IDENTITY_MODULE_FILE,
      MODULE.replace("export async function findOrCreateIdentityUser", "async function x"),
    );
    expect(driftOf(() => databricksIdentityPatch.verify(tree, ctx)).message).toContain(
      "exports findOrCreateIdentityUser",
    );
  });
});
