import { Writable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log/logger.js";
import { clearSecrets, maskDeep, maskSecrets, registerSecret } from "../../src/log/secrets.js";

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return { stream, text: () => chunks.join("") };
}

describe("secret masking", () => {
  afterEach(() => clearSecrets());

  it("masks registered secrets, URL-encoded forms and nested values", () => {
    registerSecret("s3cr3t/with+chars");
    expect(maskSecrets("pw=s3cr3t/with+chars")).toBe("pw=****");
    expect(maskSecrets(`postgres://u:${encodeURIComponent("s3cr3t/with+chars")}@h/db`)).toBe(
      "postgres://u:****@h/db",
    );
    expect(maskDeep({ a: ["s3cr3t/with+chars"] })).toEqual({ a: ["****"] });
  });

  it("never lets a secret through the logger, human or JSON", () => {
    registerSecret("tok-abcdef");
    for (const json of [false, true]) {
      const out = capture();
      const log = createLogger({ json, stream: out.stream });
      log.info("token is", "tok-abcdef", { nested: "tok-abcdef" });
      log.error(new Error("failed with tok-abcdef"));
      expect(out.text()).not.toContain("tok-abcdef");
      expect(out.text()).toContain("****");
    }
  });
});
