import { afterEach, describe, expect, it } from "vitest";
import { clearSecrets, maskSecrets } from "../../src/log/secrets.js";
import { mirrorDirFor } from "../../src/upstream/cache.js";
import { locateRepo, splitRepoCredentials } from "../../src/upstream/repo-url.js";

describe("credentials in a repository URL", () => {
  afterEach(() => clearSecrets());

  it("splits user:token off https, and masks the token (raw and decoded) from then on", () => {
    const r = splitRepoCredentials("https://me:t%2Fok3n-value@github.example/org/fork.git");
    expect(r).toEqual({
      url: "https://github.example/org/fork.git",
      credentials: { username: "me", password: "t/ok3n-value" },
    });
    expect(maskSecrets("a t/ok3n-value b t%2Fok3n-value")).toBe("a **** b ****");
    expect(maskSecrets("me")).toBe("me"); // the user name beside a password is not a secret
  });

  it("takes a lone userinfo on https as a token (GitHub's https://TOKEN@github.com/…)", () => {
    const r = splitRepoCredentials("https://ghp_abcdef123456@github.com/o/r.git");
    expect(r.url).toBe("https://github.com/o/r.git");
    expect(r.credentials).toEqual({ username: "ghp_abcdef123456", password: "" });
    expect(maskSecrets("x ghp_abcdef123456")).toBe("x ****");
  });

  it("keeps ssh's user (ssh needs it) and leaves URLs without credentials as they are", () => {
    expect(splitRepoCredentials("ssh://git@github.com/o/r.git")).toEqual({
      url: "ssh://git@github.com/o/r.git",
    });
    expect(splitRepoCredentials("git@github.com:o/r.git")).toEqual({ url: "git@github.com:o/r.git" });
    expect(splitRepoCredentials("file:///tmp/x")).toEqual({ url: "file:///tmp/x" });
    expect(locateRepo("https://h/o/r.git/", "/")).toEqual({ url: "https://h/o/r.git" });
  });

  it("names the cache directory from the URL without credentials: one mirror whatever the token", () => {
    const a = mirrorDirFor("/c", "https://u:token-one@h/o/fork.git");
    const b = mirrorDirFor("/c", "https://u:token-two@h/o/fork.git");
    expect(a).toBe(b);
    expect(a).toBe(mirrorDirFor("/c", "https://h/o/fork.git"));
    expect(a).toMatch(/^\/c\/repos\/o-fork-[0-9a-f]{12}\.git$/);
    expect(a).not.toContain("token");
  });
});
