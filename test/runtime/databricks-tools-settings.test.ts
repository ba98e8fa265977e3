import { describe, expect, it } from "vitest";
import {
  APP_IDENTITY_VAR,
  STDIO_POLICIES as BACKEND_POLICIES,
} from "../../src/patches/stdio-servers-module.js";
import { CHILD_SECRET_NAMES, splitChildSecrets } from "../../src/runtime/child-secrets.js";
import {
  APP_IDENTITY_ENV,
  APP_IDENTITY_POLICIES,
  databricksToolsChildEnv,
  GATEWAY_PORT_ENV,
  GATEWAY_SECRET_ENV,
} from "../../src/runtime/databricks-tools/settings.js";

describe("what the backend gets of the Databricks tools", () => {
  it("the gateway secret is handed over on the pipe, never put in the backend's environment; the port is plain", () => {
    expect(CHILD_SECRET_NAMES.has(GATEWAY_SECRET_ENV)).toBe(true);
    const all = databricksToolsChildEnv(
      { enabled: true, appIdentity: "managers" },
      { port: 41234, secret: "f".repeat(64) },
    );
    const { env, secrets } = splitChildSecrets(all);
    expect(secrets).toEqual({ [GATEWAY_SECRET_ENV]: "f".repeat(64) });
    expect(env).toEqual({
      METAMCP_DATABRICKS_TOOLS: "on",
      [APP_IDENTITY_ENV]: "managers",
      [GATEWAY_PORT_ENV]: "41234",
    });
  });

  it("off: no gateway, the backend is told so; the app-identity policy reaches it either way", () => {
    expect(databricksToolsChildEnv({ enabled: false, appIdentity: "everyone" }, undefined)).toEqual({
      METAMCP_DATABRICKS_TOOLS: "off",
      [APP_IDENTITY_ENV]: "everyone",
    });
  });

  it("the runtime and the backend module agree on the variable and its policies", () => {
    expect(APP_IDENTITY_VAR).toBe(APP_IDENTITY_ENV);
    expect([...APP_IDENTITY_POLICIES]).toEqual([...BACKEND_POLICIES]);
  });
});
