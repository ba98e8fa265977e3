import { spawn } from "node:child_process";
import path from "node:path";
import type { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import {
  applyHandedSecrets,
  receiveChildSecrets,
  SECRETS_FD_ENV,
  splitChildSecrets,
} from "../../src/runtime/child-secrets.js";
import { PROJECT_ROOT } from "../support/cli.js";

/**
 * The hand-over of MetaMCP's secrets (src/runtime/child-secrets.ts): the REAL preload the app tree ships
 * (dist/runtime/secrets-preload.mjs, built by `pretest`) in a real child, given the pipe as the runtime gives it.
 */
const PRELOAD = pathToFileURL(path.join(PROJECT_ROOT, "dist/runtime/secrets-preload.mjs")).href;
// What the child reports: its secret as MetaMCP's code sees it, and whether its /proc environ holds it.
const REPORT = `const fs = require("node:fs");
console.log(JSON.stringify({
  secret: process.env.BETTER_AUTH_SECRET ?? null,
  fdVar: process.env.${SECRETS_FD_ENV} ?? null,
  inEnviron: fs.readFileSync("/proc/" + process.pid + "/environ", "latin1").includes("s3cr3t-value"),
}));`;

function runChild(handOver: string | null, withFd = true) {
  const child = spawn(process.execPath, ["--import", PRELOAD, "-e", REPORT], {
    env: { PATH: process.env.PATH ?? "", ...(withFd ? { [SECRETS_FD_ENV]: "3" } : {}) },
    stdio: ["ignore", "pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => {
    out += String(d);
  });
  child.stderr!.on("data", (d) => {
    err += String(d);
  });
  const pipe = child.stdio[3] as Writable;
  pipe.on("error", () => {});
  if (handOver === null) pipe.destroy();
  else pipe.end(handOver);
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    child.once("exit", (code) => resolve({ code, out, err })),
  );
}

describe("MetaMCP's secrets on a pipe, not in the environment", () => {
  it("splits a child's variables: the known secrets go on the pipe, the rest stays in the environment", () => {
    expect(
      splitChildSecrets({
        PGHOST: "h",
        BETTER_AUTH_SECRET: "a",
        METAMCP_IDENTITY_SECRET: "b",
        METAMCP_PG_PASSWORD_FILE: "/tmp/x",
        BOOTSTRAP_USER_PASSWORD: "c",
        BOOTSTRAP_ENABLE: "false",
      }),
    ).toEqual({
      env: { PGHOST: "h", BOOTSTRAP_ENABLE: "false" },
      secrets: {
        BETTER_AUTH_SECRET: "a",
        METAMCP_IDENTITY_SECRET: "b",
        METAMCP_PG_PASSWORD_FILE: "/tmp/x",
        BOOTSTRAP_USER_PASSWORD: "c",
      },
    });
  });

  it("refuses a hand-over that is not a map of strings; does nothing without the fd variable", () => {
    expect(() => applyHandedSecrets("", {})).toThrow(/not JSON \(0 bytes: did the runtime exit\?\)/);
    expect(() => applyHandedSecrets("[]", {})).toThrow(/not a map/);
    expect(() => applyHandedSecrets('{"A":1}', {})).toThrow(/non-string A/);
    const env: Record<string, string | undefined> = { PATH: "/bin" };
    expect(receiveChildSecrets(env)).toEqual([]);
    expect(env).toEqual({ PATH: "/bin" });
    expect(() => receiveChildSecrets({ [SECRETS_FD_ENV]: "x" })).toThrow(/is not a file descriptor/);
  });

  it("the real preload: the value reaches process.env, never /proc/<pid>/environ; the fd variable is gone", async () => {
    const r = await runChild(JSON.stringify({ BETTER_AUTH_SECRET: "s3cr3t-value" }));
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ secret: "s3cr3t-value", fdVar: null, inEnviron: false });
  });

  it("a runtime gone before handing over: the child stops before MetaMCP's code runs, saying why", async () => {
    const r = await runChild(null);
    expect(r.code).toBe(70);
    expect(r.out).toBe("");
    expect(r.err).toContain("could not receive this process's secrets from the runtime");
  });

  it("a node process started with the backend's flags but no pipe (a child MetaMCP forks) runs normally", async () => {
    const r = await runChild("{}", false);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ secret: null, fdVar: null, inEnviron: false });
  });
});
