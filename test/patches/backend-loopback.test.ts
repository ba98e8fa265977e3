import { execFileSync } from "node:child_process";
import os from "node:os";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import {
  BACKEND_INDEX_FILE,
  KNOWN_LISTEN,
  patchBackendListenText,
  verifyBackendListenText,
} from "../../src/patches/backend-loopback.js";
import {
  type BackendIndexForm,
  SYNTHETIC_BACKEND_IMPORTS,
  syntheticBackendIndex,
} from "../support/synthetic-upstream.js";
import { driftOf, linkedPackageDir, PATCH_CTX } from "./helpers.js";

const ctx = PATCH_CTX;
const ENV_PORT = "Number(process.env.METAMCP_BACKEND_PORT) || ";
const KNOWN: { form: BackendIndexForm; port: string; listen: string }[] = [
  { form: "port-var", port: "PORT", listen: `app.listen(${ENV_PORT}PORT, "127.0.0.1", () => {` },
  { form: "port-literal", port: "12009", listen: `app.listen(${ENV_PORT}12009, "127.0.0.1", () => {` },
  {
    form: "async-callback",
    port: "12009",
    listen: `app.listen(${ENV_PORT}12009, "127.0.0.1", async () => {`,
  },
  {
    form: "start-function",
    port: "12009",
    listen: `  app.listen(${ENV_PORT}12009, "127.0.0.1", async () => {`,
  },
];

describe("backend-loopback patch: every listen form upstream has used", () => {
  it.each(KNOWN)(
    "$form: the port variable and the host go in through the syntax tree, verified, idempotent",
    ({ form, port, listen }) => {
      const text = syntheticBackendIndex(form);
      const out = patchBackendListenText(BACKEND_INDEX_FILE, text, ctx);
      expect(out.edits).toBe(1);
      expect(out.text.split("\n")).toContain(listen);
      // Nothing else changed: upstream's port is kept as the fallback, `, "127.0.0.1"` after it.
      expect(out.text.replace(`${ENV_PORT}${port}, "127.0.0.1"`, port)).toBe(text);
      expect(() => verifyBackendListenText(BACKEND_INDEX_FILE, out.text, ctx)).not.toThrow();
      expect(patchBackendListenText(BACKEND_INDEX_FILE, out.text, ctx)).toEqual({ text: out.text, edits: 0 });
    },
  );

  it("a form it doesn't know stops with drift (exit 3), naming the file and what it expected", () => {
    const cases: [string, string][] = [
      // upstream picked a host of its own: which one wins is not ours to guess
      [syntheticBackendIndex("own-host"), 'found `app.listen(12009, "0.0.0.0", async () => {`'],
      // a second server: a listener this patch has not looked at
      [syntheticBackendIndex("two-listeners"), "found 2 `.listen(` calls"],
      ['import express from "express";\nexport const app = express();\n', "found 0 `.listen(` calls"],
      ['import express from "express";\nexpress().listen();\n', "found `express().listen()`"],
    ];
    for (const [text, found] of cases) {
      const err = driftOf(() => patchBackendListenText(BACKEND_INDEX_FILE, text, ctx));
      expect(err.exitCode).toBe(3);
      expect(err.message).toContain(
        `upstream drift in ${BACKEND_INDEX_FILE} (MetaMCP v9.9.9, patch backend-loopback)`,
      );
      expect(err.message).toContain(KNOWN_LISTEN);
      expect(err.message).toContain(found);
    }
  });

  it("verify refuses a tree whose backend would listen on every interface, or that no longer parses", () => {
    const unpatched = syntheticBackendIndex("async-callback");
    expect(driftOf(() => verifyBackendListenText(BACKEND_INDEX_FILE, unpatched, ctx)).message).toContain(
      'patched to listen on "127.0.0.1" at `Number(process.env.METAMCP_BACKEND_PORT) || <port>`; found `app.listen(12009, async () => {`',
    );
    // The host alone (what this patch made before it moved the port): the port is upstream's fixed one.
    expect(
      driftOf(() =>
        verifyBackendListenText(
          BACKEND_INDEX_FILE,
          unpatched.replace("app.listen(12009,", 'app.listen(12009, "127.0.0.1",'),
          ctx,
        ),
      ).message,
    ).toContain('found `app.listen(12009, "127.0.0.1", async () => {`');
    const patched = patchBackendListenText(BACKEND_INDEX_FILE, unpatched, ctx).text;
    expect(
      driftOf(() =>
        verifyBackendListenText(BACKEND_INDEX_FILE, patched.replace('"127.0.0.1"', '"0.0.0.0"'), ctx),
      ).message,
    ).toContain('patched to listen on "127.0.0.1"');
    expect(
      driftOf(() =>
        verifyBackendListenText(BACKEND_INDEX_FILE, patched.replace("const app =", "const app"), ctx),
      ).message,
    ).toContain("valid TypeScript");
  });
});

/**
 * The network part runs in a network namespace of its own (`unshare -n`: root there, loopback only, port
 * 12009 free whatever else runs) with a second, non-loopback address, as a laptop's LAN address or a
 * container's eth0 would be. A dummy link where the kernel has them, else a veth pair.
 */
const NON_LOOPBACK = "10.99.0.1";
const NETNS_SETUP = [
  "set -e",
  "ip link set lo up",
  `if ip link add d0 type dummy 2>/dev/null; then ip addr add ${NON_LOOPBACK}/24 dev d0; ip link set d0 up;`,
  `else ip link add v0 type veth peer name v1; ip addr add ${NON_LOOPBACK}/24 dev v0; ip link set v0 up; ip link set v1 up; fi`,
].join("\n");
const UNSHARE = process.getuid?.() === 0 ? ["-n"] : ["-r", "-n"];

function netnsUnavailable(): string | undefined {
  try {
    execFileSync(
      "unshare",
      [...UNSHARE, "sh", "-c", `${NETNS_SETUP}\nip -4 addr show | grep -q ${NON_LOOPBACK}`],
      {
        stdio: "pipe",
        timeout: 30_000,
      },
    );
    return undefined;
  } catch (err) {
    const why = String((err as { stderr?: Buffer }).stderr ?? (err as Error).message)
      .trim()
      .split("\n")[0];
    return `skipped: no network namespace with a non-loopback address here (unshare -n + ip link: ${why})`;
  }
}
const netnsSkip =
  os.platform() === "linux" ? netnsUnavailable() : "skipped: network namespaces are Linux only";
const skipNote = netnsSkip ? ` (${netnsSkip})` : "";

/**
 * Starts the backend file (real express, run as upstream's dev script runs it: tsx), waits until it answers
 * /health on 127.0.0.1, then tries 127.0.0.1 and the non-loopback address, and prints what each gave.
 */
const PROBE = `
import { spawn } from "node:child_process";
import http from "node:http";
const get = (host) => new Promise((resolve) => {
const port = Number(process.env.PROBE_PORT ?? 12009);
  const req = http.get({ host, port, path: "/health", timeout: 10000 }, (res) => {
    res.resume();
    res.on("end", () => resolve(res.statusCode));
  });
  req.on("timeout", () => req.destroy(new Error("timeout")));
  req.on("error", (e) => resolve(e.code ?? e.message));
});
const backend = spawn(process.execPath, ["--import", "tsx", "src/index.ts"], { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, PORT: "12009", ...(process.env.PROBE_PORT ? { METAMCP_BACKEND_PORT: process.env.PROBE_PORT } : {}) } });
const deadline = Date.now() + 90000;
let loopback;
while (Date.now() < deadline) {
  loopback = await get("127.0.0.1");
  if (loopback === 200) break;
  if (backend.exitCode !== null) break;
  await new Promise((r) => setTimeout(r, 100));
}
const external = await get(process.env.NON_LOOPBACK);
backend.kill("SIGTERM");
console.log(JSON.stringify({ loopback, external }));
`;

describe("the patched backend on a real network", () => {
  function backendDir(text: string): string {
    // Our express (the MCP SDK's, v5 as upstream's) and tsx stand in for the backend's; what the entry
    // imports besides express are stand-ins too.
    const imports = Object.fromEntries(
      Object.entries(SYNTHETIC_BACKEND_IMPORTS).map(([rel, source]) => [`src/${rel}`, source]),
    );
    return linkedPackageDir("mmdb-loopback-", { "src/index.ts": text, ...imports, "probe.mjs": PROBE });
  }

  async function probe(text: string, port?: number): Promise<{ loopback: unknown; external: unknown }> {
    const dir = backendDir(text);
    const r = await execa("unshare", [...UNSHARE, "sh", "-c", `${NETNS_SETUP}\nexec node probe.mjs`], {
      cwd: dir,
      env: { NON_LOOPBACK, ...(port ? { PROBE_PORT: String(port) } : {}) },
      reject: false,
      timeout: 120_000,
    });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    return JSON.parse(String(r.stdout).trim().split("\n").pop()!);
  }

  it.skipIf(!!netnsSkip).each(KNOWN)(
    `$form: 127.0.0.1:12009 answers, 10.99.0.1:12009 refuses the connection${skipNote}`,
    async ({ form }) => {
      const patched = patchBackendListenText(BACKEND_INDEX_FILE, syntheticBackendIndex(form), ctx).text;
      expect(await probe(patched)).toEqual({ loopback: 200, external: "ECONNREFUSED" });
    },
    150_000,
  );

  it.skipIf(!!netnsSkip).each(KNOWN)(
    `$form with METAMCP_BACKEND_PORT=12109 (a second instance): 127.0.0.1:12109 answers, 10.99.0.1:12109 refuses${skipNote}`,
    async ({ form }) => {
      const patched = patchBackendListenText(BACKEND_INDEX_FILE, syntheticBackendIndex(form), ctx).text;
      expect(await probe(patched, 12109)).toEqual({ loopback: 200, external: "ECONNREFUSED" });
    },
    150_000,
  );

  it.skipIf(!!netnsSkip)(
    `unpatched (upstream's), the same backend answers on 10.99.0.1 too: what the patch takes away${skipNote}`,
    async () => {
      expect(await probe(syntheticBackendIndex("async-callback"))).toEqual({ loopback: 200, external: 200 });
    },
    150_000,
  );
});
