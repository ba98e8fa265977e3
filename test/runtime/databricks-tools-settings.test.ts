import { afterAll, describe, expect, it } from "vitest";
import { clearSecrets } from "../../src/log/secrets.js";
import {
  APP_IDENTITY_VAR,
  STDIO_POLICIES as BACKEND_POLICIES,
} from "../../src/patches/stdio-servers-module.js";
import { CHILD_SECRET_NAMES, splitChildSecrets } from "../../src/runtime/child-secrets.js";
import { startDatabricksTools } from "../../src/runtime/databricks-tools/index.js";
import {
  APP_IDENTITY_ENV,
  APP_IDENTITY_POLICIES,
  databricksToolsChildEnv,
  GATEWAY_PORT_ENV,
  GATEWAY_SECRET_ENV,
} from "../../src/runtime/databricks-tools/settings.js";

afterAll(() => clearSecrets());

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

describe("startDatabricksTools", () => {
  const log = { info: () => {}, warn: () => {}, error: () => {} };

  it("off: no token is asked for and no gateway listens", async () => {
    let asked = 0;
    const tools = await startDatabricksTools({
      settings: { enabled: false, appIdentity: "managers" },
      host: "https://adb-1.2.azuredatabricks.net",
      principalId: "sp",
      issueToken: async () => {
        asked++;
        return { token: "t", expiresAt: new Date(Date.now() + 3600_000) };
      },
      log,
    });
    expect(tools.childEnv).toEqual({ METAMCP_DATABRICKS_TOOLS: "off", [APP_IDENTITY_ENV]: "managers" });
    await tools.stop();
    expect(asked).toBe(0);
  });

  it("on: the gateway listens on loopback behind its secret, with the keeper's token; stop closes it", async () => {
    const tools = await startDatabricksTools({
      settings: { enabled: true, appIdentity: "managers" },
      host: "https://adb-1.2.azuredatabricks.net",
      principalId: "sp",
      issueToken: async () => ({ token: "t", expiresAt: new Date(Date.now() + 3600_000) }),
      log,
    });
    const port = Number(tools.childEnv[GATEWAY_PORT_ENV]);
    expect(tools.childEnv[GATEWAY_SECRET_ENV]).toMatch(/^[0-9a-f]{64}$/);
    expect((await fetch(`http://127.0.0.1:${port}/api/2.0/mcp/sql`, { method: "POST" })).status).toBe(401);
    await tools.stop();
    await expect(fetch(`http://127.0.0.1:${port}/api/2.0/mcp/sql`)).rejects.toThrow();
  });
});
