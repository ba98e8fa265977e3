import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { renderEnvTemplate } from "../../src/config/env-template.js";
import { loadConfig } from "../../src/config/load.js";
import { VARIABLES } from "../../src/config/variables.js";
import { PROJECT_ROOT } from "../support/cli.js";
import { tempDir } from "../support/tmp.js";

describe("loadConfig", () => {
  it("derives every name from the target", () => {
    const cwd = tempDir();
    const dev = loadConfig({ cwd, env: {} });
    const prod = loadConfig({ cwd, env: { TARGET: "prod" } });
    expect(dev.appName).toBe("metamcp-dev");
    expect(prod.appName).toBe("metamcp");
    expect(dev.lakebase.project).toBe("metamcp-dev-db");
    expect(prod.lakebase.instanceName).toBe("metamcp-db");
    expect(prod.secret.scope).toBe("metamcp-secrets");
    expect(dev.values.APP_NAME?.source).toBe("derived");
    expect(dev.buildDir).toBe(path.join(cwd, "build/metamcp"));
  });

  it("takes flags over environment over .env over defaults", () => {
    const cwd = tempDir();
    writeFileSync(
      path.join(cwd, ".env"),
      "METAMCP_REF=v1.0.0\nMETAMCP_DB_SCHEMA=from_dotenv\nAPP_BASE_NAME=acme\n",
    );
    const cfg = loadConfig({ cwd, env: { METAMCP_REF: "v2.0.0" }, flags: { ref: "v3.0.0" } });
    expect(cfg.ref).toBe("v3.0.0");
    expect(cfg.values.METAMCP_REF?.source).toBe("flag");
    expect(cfg.schema).toBe("from_dotenv");
    expect(cfg.values.METAMCP_DB_SCHEMA?.source).toBe("dotenv");
    expect(cfg.appName).toBe("acme-dev");
    const envOnly = loadConfig({ cwd, env: { METAMCP_REF: "v2.0.0" } });
    expect(envOnly.ref).toBe("v2.0.0");
    expect(envOnly.values.METAMCP_REF?.source).toBe("env");
  });

  it("refuses placeholders and invalid identifiers, naming each variable", () => {
    const cwd = tempDir();
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal placeholder is the point
    expect(() => loadConfig({ cwd, env: { APP_NAME: "${APP_NAME}" } })).toThrow(
      /APP_NAME is still a placeholder/,
    );
    // .env expands nothing: `$HOME/…` would be a folder named `$HOME`; a template's stand-in is no value.
    expect(() => loadConfig({ cwd, env: { BUILD_DIR: "$HOME/metamcp-build" } })).toThrow(
      /BUILD_DIR is still a placeholder \("\$HOME\/metamcp-build", from env\): set a real value/,
    );
    expect(() => loadConfig({ cwd, env: { APP_NAME: "{{app_name}}" } })).toThrow(
      /APP_NAME is still a placeholder/,
    );
    expect(() => loadConfig({ cwd, env: { METAMCP_DB_SCHEMA: "Replace_Me" } })).toThrow(
      /METAMCP_DB_SCHEMA is still a placeholder/,
    );
    expect(() => loadConfig({ cwd, env: { METAMCP_DB_SCHEMA: "Bad-Name" } })).toThrow(/METAMCP_DB_SCHEMA/);
    expect(() => loadConfig({ cwd, env: { METAMCP_DB_SCHEMA: "public" } })).toThrow(/must not be `public`/);
    expect(() => loadConfig({ cwd, env: { TARGET: "staging" } })).toThrow(/TARGET/);
  });

  it("keeps .env.template in step with the variable table", () => {
    const committed = readFileSync(path.join(PROJECT_ROOT, ".env.template"), "utf8");
    expect(committed.trimEnd()).toBe(renderEnvTemplate().trimEnd());
    for (const v of VARIABLES) expect(committed).toContain(`\n${v.env}=`);
  });
});
