import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { API_KEY_ENV, resolveApiKey, writeKeyFile } from "../../src/connect/api-key.js";
import { clientConfig } from "../../src/connect/clients.js";
import { connectionSpec } from "../../src/connect/plan.js";
import { mintingTokens } from "../../src/connect/token-source.js";
import { writeClientConfig } from "../../src/connect/write-config.js";
import { maskSecrets } from "../../src/log/secrets.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "mmdb-connect-parts-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("mintingTokens", () => {
  it("renews a quarter of the lifetime (at most 40 s) ahead of expiry, one mint for concurrent callers", async () => {
    let now = 0;
    let minted = 0;
    const source = mintingTokens(
      "test",
      async () => {
        minted++;
        return { token: `tok-${minted}-abcdef`, expiresAt: now + 4000 };
      },
      { now: () => now },
    );
    const [a, b] = await Promise.all([source.token(), source.token()]);
    expect([a, b]).toEqual(["tok-1-abcdef", "tok-1-abcdef"]);
    now = 2900; // 1.1 s left of 4 s: still more than a quarter
    expect(await source.token()).toBe("tok-1-abcdef");
    now = 3000; // 1 s left: renewed before it lapses
    expect(await source.token()).toBe("tok-2-abcdef");
    expect(await source.refresh()).toBe("tok-3-abcdef");
    // Every token it handed out is masked in logs.
    expect(maskSecrets("a tok-2-abcdef b")).toBe("a **** b");
  });
});

describe("the MetaMCP key", () => {
  it("precedence: --api-key, --api-key-file, METAMCP_API_KEY, the default file", () => {
    const file = path.join(dir, "k/app.key");
    writeKeyFile(file, "sk_mt_fromfile\n");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const other = path.join(dir, "other.key");
    writeFileSync(other, "sk_mt_flagfile", { mode: 0o600 });
    const env = { [API_KEY_ENV]: "sk_mt_fromenv" };
    expect(resolveApiKey({ flag: "sk_mt_flag", flagFile: other, env, defaultFile: file })?.key).toBe(
      "sk_mt_flag",
    );
    expect(resolveApiKey({ flagFile: other, env, defaultFile: file })?.key).toBe("sk_mt_flagfile");
    expect(resolveApiKey({ env, defaultFile: file })?.key).toBe("sk_mt_fromenv");
    expect(resolveApiKey({ env: {}, defaultFile: file })).toEqual({
      key: "sk_mt_fromfile",
      source: "file",
      file,
    });
    expect(resolveApiKey({ env: {}, defaultFile: path.join(dir, "none") })).toBeUndefined();
    expect(() => resolveApiKey({ flag: "two words", env: {}, defaultFile: file })).toThrow(/whitespace/);
  });
});

describe("writing a client's file", () => {
  const spec = connectionSpec({
    endpoint: "tools",
    target: { kind: "local", stateDir: "/state" },
    url: "http://127.0.0.1:8000/metamcp/tools/mcp",
    keyFile: "/keys/local.key",
    node: "/usr/bin/node",
    bin: "/project/bin/metamcp-databricks.js",
  });

  it("keeps the user's servers and inputs, replaces only our entry and our inputs", () => {
    mkdirSync(path.join(dir, ".vscode"));
    const file = path.join(dir, ".vscode/mcp.json");
    writeFileSync(
      file,
      JSON.stringify({
        inputs: [{ type: "promptString", id: "theirs", description: "x" }],
        servers: { theirs: { type: "stdio", command: "x" } },
        other: true,
      }),
    );
    const cfg = clientConfig("vscode", "headers", spec)!;
    expect(writeClientConfig(cfg, spec.serverName, dir)?.action).toBe("added");
    expect(writeClientConfig(cfg, spec.serverName, dir)?.action).toBe("updated");
    const doc = JSON.parse(readFileSync(file, "utf8"));
    expect(doc.other).toBe(true);
    expect(Object.keys(doc.servers)).toEqual(["theirs", "metamcp-local-tools"]);
    expect(doc.inputs.map((i: { id: string }) => i.id)).toEqual([
      "theirs",
      "metamcp-local-tools-databricks-token",
      "metamcp-local-tools-api-key",
    ]);
  });

  it("leaves a file with comments (JSONC) unchanged and says so", () => {
    mkdirSync(path.join(dir, ".vscode"));
    const file = path.join(dir, ".vscode/mcp.json");
    const text = '{\n  // mine\n  "servers": {}\n}\n';
    writeFileSync(file, text);
    expect(() => writeClientConfig(clientConfig("vscode", "bridge", spec)!, spec.serverName, dir)).toThrow(
      /not plain JSON .*left unchanged/,
    );
    expect(readFileSync(file, "utf8")).toBe(text);
  });
});
