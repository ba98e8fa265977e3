import { describe, expect, it } from "vitest";
import { placeholderKind } from "../src/placeholders.js";

/**
 * The one placeholder check, used by the config loader and render (`setting`) and by the runtime's
 * BETTER_AUTH_SECRET check (`secret`; its own cases, with the 60,000 random draws, are in
 * test/runtime/env.test.ts).
 */
describe("placeholderKind", () => {
  it.each([
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal placeholder is the point
    ["${APP_NAME}", "reference"],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal placeholder is the point
    ["https://${HOST}/x", "reference"],
    ["{{secrets/scope/key}}", "reference"],
    ["<your app name>", "reference"],
    ["$(whoami)-dev", "reference"],
    ["$USER", "reference"],
    // .env and app.yaml expand nothing: `$HOME/build` stays those eleven characters.
    ["$HOME/metamcp-build", "reference"],
    ["change-me", "stand-in"],
    ["CHANGE_ME", "stand-in"],
    ["Replace Me", "stand-in"],
    ["TODO", "stand-in"],
    ["placeholder", "stand-in"],
  ] as const)("a setting %j is a placeholder (%s)", (value, kind) => {
    expect(placeholderKind(value, "setting")).toBe(kind);
  });

  it.each([
    "none",
    "default",
    "test",
    "0",
    "metamcp_app",
    "https://example.com",
    "my-example-app",
    "todo-list-server",
    "HOME,MY_*",
    "/tmp/$x",
    "",
  ])("a setting %j is a real value", (value) => {
    expect(placeholderKind(value, "setting")).toBeUndefined();
  });

  it("a secret is held to more: stand-in words anywhere, the usual stand-in values, one repeated character", () => {
    for (const value of ["secret", "none", "xxxxxxxxxxxxxxxx", "my-example-secret-1234567", "TODO-TODO-TODO"])
      expect(placeholderKind(value, "secret"), value).toBe("stand-in");
    // A random secret may hold `$Ab`; only a whole `$NAME` is a reference there.
    expect(placeholderKind("Kx9$Abq2LmP0zRt7Wv4", "secret")).toBeUndefined();
    expect(placeholderKind("$BETTER_AUTH_SECRET", "secret")).toBe("reference");
  });
});
