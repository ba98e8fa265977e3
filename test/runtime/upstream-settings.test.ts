import { afterEach, describe, expect, it } from "vitest";
import { clearSecrets, maskSecrets } from "../../src/log/secrets.js";
import { upstreamChildEnv, upstreamSettings } from "../../src/runtime/upstream-settings.js";

// How MetaMCP main reads these variables (apps/backend/src/auth.ts and lib/startup.ts), restated here so
// the test checks what upstream will actually see, not just our strings.
const upstreamTrustedOrigins = (v: string | undefined) =>
  v
    ? v
        .split(",")
        .map((o) => o.trim())
        .filter(Boolean)
    : [];
const upstreamParseBool = (value: string | undefined, defaultValue: boolean) => {
  if (value === undefined) return defaultValue;
  const n = value.trim().toLowerCase();
  if (["1", "true", "yes", "y", "on"].includes(n)) return true;
  if (["0", "false", "no", "n", "off"].includes(n)) return false;
  return defaultValue;
};

const APP_URL = "https://metamcp-1234567890.aws.databricksapps.com";

describe("settings for MetaMCP main's new variables", () => {
  afterEach(() => clearSecrets());

  it("trusts the app's public origin, plus the app's own extra origins, each once", () => {
    const plain = upstreamSettings(APP_URL, {});
    expect(upstreamTrustedOrigins(plain.env.EXTRA_TRUSTED_ORIGINS)).toEqual([APP_URL]);
    const extra = upstreamSettings(`${APP_URL}/`, {
      EXTRA_TRUSTED_ORIGINS: ` https://mcp.example.com/path , ${APP_URL},https://*.example.org`,
    });
    expect(upstreamTrustedOrigins(extra.env.EXTRA_TRUSTED_ORIGINS)).toEqual([
      APP_URL,
      "https://mcp.example.com",
      "https://*.example.org",
    ]);
  });

  it("turns upstream's bootstrap (on by default in its code) off, and passes no BOOTSTRAP_* on", () => {
    const s = upstreamSettings(APP_URL, {
      BOOTSTRAP_USER_EMAIL: "admin@example.com",
      BOOTSTRAP_USER_PASSWORD: "hunter2-but-longer",
    });
    expect(upstreamParseBool(s.env.BOOTSTRAP_ENABLE, true)).toBe(false);
    expect(Object.keys(s.env).filter((k) => k.startsWith("BOOTSTRAP_"))).toEqual(["BOOTSTRAP_ENABLE"]);
    expect(s.secrets).toEqual([]);
  });

  it("with BOOTSTRAP_ENABLE=true, passes every BOOTSTRAP_* on and masks the credentials", () => {
    const appEnv = {
      BOOTSTRAP_ENABLE: "TRUE",
      BOOTSTRAP_USER_EMAIL: "admin@example.com",
      BOOTSTRAP_USER_PASSWORD: "pw-0123456789",
      BOOTSTRAP_API_KEYS: '[{"name":"ci","key":"sk_mt_abcdef0123456789"}]',
      BOOTSTRAP_DISABLE_REGISTRATION_UI: "true",
      NOT_BOOTSTRAP: "x",
    };
    const env = upstreamChildEnv(APP_URL, appEnv);
    expect(upstreamParseBool(env.BOOTSTRAP_ENABLE, true)).toBe(true);
    expect(env).toMatchObject({
      BOOTSTRAP_USER_EMAIL: "admin@example.com",
      BOOTSTRAP_USER_PASSWORD: "pw-0123456789",
      BOOTSTRAP_API_KEYS: appEnv.BOOTSTRAP_API_KEYS,
      BOOTSTRAP_DISABLE_REGISTRATION_UI: "true",
    });
    expect(env.NOT_BOOTSTRAP).toBeUndefined();
    expect(maskSecrets(`password pw-0123456789 keys ${appEnv.BOOTSTRAP_API_KEYS}`)).toBe(
      "password **** keys ****",
    );
    expect(maskSecrets("admin@example.com")).toBe("admin@example.com");
  });

  it("passes LOG_LEVEL on only when the app sets it", () => {
    expect(upstreamSettings(APP_URL, {}).env.LOG_LEVEL).toBeUndefined();
    expect(upstreamSettings(APP_URL, { LOG_LEVEL: "warn" }).env.LOG_LEVEL).toBe("warn");
  });
});
