import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log/logger.js";
import { waitFor } from "../../src/retry.js";
import { runMigrations } from "../../src/runtime/database.js";
import { MCP_TOOL_TIMEOUT_MS, seedMcpTimeouts } from "../../src/runtime/mcp-timeouts.js";
import { sessionKey } from "../../src/runtime/session-store.js";
import { createFakeAppTree, FAKE_METAMCP_API_KEY, FAKE_TREE_TABLES } from "../support/fake-app-tree.js";
import { startOtlpReceiver } from "../support/otlp-receiver.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";
import { childPids, listeningPorts, RIG_AUTH_SECRET, useRuntimeRig } from "../support/runtime-rig.js";
import { UPSTREAM_PORTS } from "../support/upstream-port-holders.js";
import { REGION_TOOL, startFakeWorkspace } from "./fake-workspace-mcp.js";

/**
 * The runtime bundle (`node runtime/start.mjs`, as app.yaml runs it) against the Databricks stand-in
 * and a Lakebase-like PostgreSQL whose passwords are the issued credentials, expiring at login
 * (test/support/runtime-rig.ts): MetaMCP's internal ports are free ones picked per run, so this runs beside
 * anything holding upstream's 12008/12009.
 */
let db: LakebaseLikePostgres;
const rig = useRuntimeRig(async () => {
  db = await startLakebaseLikePostgres({ role: "6c0e1f9a-app-sp" });
  return { postgres: db, clientSecret: "sp-secret-xyz", credentialTtlSeconds: 3, name: "start" };
});
const startRuntime = rig.start;
const appGet = rig.appGet;
const waitReady = rig.waitReady;

/** What any process of the app's user can read of `pid`: the environment it started with. */
const environOf = (pid: number) => readFileSync(`/proc/${pid}/environ`, "latin1");
/** The runtime's credential folder (its `owner` file names the runtime's pid) and the live credential in it. */
function credentialOf(runtime: { child: { pid?: number }; tmp: string }): {
  dir: string;
  file: string;
  token: string;
} {
  for (const name of readdirSync(runtime.tmp).filter((n) => n.startsWith("metamcp-cred-"))) {
    const dir = path.join(runtime.tmp, name);
    try {
      if (
        (JSON.parse(readFileSync(path.join(dir, "owner"), "utf8")) as { pid: number }).pid !==
        runtime.child.pid
      )
        continue;
      const file = path.join(dir, "pgpassword");
      return { dir, file, token: readFileSync(file, "utf8").trim() };
    } catch {
      // one being removed
    }
  }
  throw new Error(`no credential folder of process ${runtime.child.pid} in ${runtime.tmp}`);
}

describe("the runtime bundle against the Databricks stand-in", () => {
  describe("start (the runtime inside the app)", () => {
    it("migrates into the custom schema and serves through one port, across credential renewals with zero failed queries", async () => {
      const app = startRuntime();
      await waitReady(app);
      // MetaMCP's servers listen on the internal ports the app was given, never on upstream's 12008/12009,
      // and the runtime adds no port of its own but the app's and the tools gateway's (loopback, any free one).
      const ports = listeningPorts(app.child.pid!);
      expect(ports).toEqual(
        expect.arrayContaining([rig.appPort, rig.internal.backendPort, rig.internal.frontendPort]),
      );
      for (const port of UPSTREAM_PORTS) expect(ports, `port ${port}`).not.toContain(port);
      expect(ports.length, `listening: ${ports.join(", ")}`).toBeLessThanOrEqual(4);
      // With TEST_HOLD_UPSTREAM_PORTS=1 (as a `make local` beside it): served while those are someone else's.
      for (const port of rig.heldUpstreamPorts)
        expect((await fetch(`http://127.0.0.1:${port}/`)).status, `port ${port}`).toBe(503);
      const notes = await (await appGet("/metamcp/notes")).json();
      expect(notes).toEqual({ bodies: [], schema: null });
      // Every request opens a NEW login (and the pool's idle connections expire): each must use the current credential.
      let ok = 0;
      const failures: string[] = [];
      const renewals = () => app.raw.filter((l) => l.includes("database credential renewed")).length;
      await waitFor(
        async () => {
          for (const p of ["/metamcp/fresh", `/metamcp/notes?body=n${ok}`]) {
            const res = await appGet(p, p.includes("body=") ? { method: "POST" } : {});
            if (res.status === 200) ok++;
            else failures.push(`${p}: ${res.status} ${await res.text()}`);
          }
          return renewals() >= 5 ? true : undefined;
        },
        { timeoutMs: 60_000, what: "five credential renewals", intervalMs: 50 },
      );
      // On failure, the app's own last lines say which side failed.
      expect(failures, app.raw.slice(-60).join("\n")).toEqual([]);
      expect(ok).toBeGreaterThan(10);
      const fresh = await (await appGet("/metamcp/fresh")).json();
      expect(fresh).toEqual({ schema: "metamcp_app" });
      // As the app's role, with a credential of the stand-in's (its logins are the stand-in's to check).
      const tables = await Promise.resolve(rig.platform.issueDatabaseCredential(60)).then(
        async ({ token }) => {
          const c = new pg.Client({ connectionString: db.roleUrl(token) });
          await c.connect();
          const r = await c.query(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog','information_schema') ORDER BY 2",
          );
          await c.end();
          return r.rows;
        },
      );
      // Upstream's (fake) tables and our own endpoint-identity table, all in the custom schema.
      expect(tables).toEqual(
        FAKE_TREE_TABLES.map((table_name) => ({ table_schema: "metamcp_app", table_name })),
      );
      // No secret in the runtime's own output.
      // local's default user stands for the deployer (CAN_MANAGE): the one STDIO manager, said at start.
      expect(app.raw.join("\n")).toContain(
        "STDIO servers: only the app's managers may create or change them (1 user(s), 0 service principal(s) in METAMCP_APP_MANAGERS)",
      );
      expect(app.raw.join("\n")).not.toContain("sp-secret-xyz");
      expect(app.raw.join("\n")).not.toContain(RIG_AUTH_SECRET);
    });

    it("MetaMCP's backend and frontend start with none of the app's secrets in their environment, and still work (also after a restart)", async () => {
      const app = startRuntime();
      await waitReady(app);
      const runtimePid = app.child.pid!;
      // Through the stand-in's Apps proxy, as a signed-in person: the router stamps its identity secret.
      const { token } = rig.platform.issueUserToken("ada@example.com");
      const viaProxy = (p: string) =>
        fetch(`${rig.platform.appUrl}${p}`, {
          headers: { authorization: `Bearer ${token}` },
          redirect: "manual",
          signal: AbortSignal.timeout(10_000),
        });
      const identitySecret = String(
        ((await (await viaProxy("/metamcp/headers")).json()) as Record<string, string>)[
          "x-metamcp-identity-secret"
        ],
      );
      expect(identitySecret).toMatch(/^[0-9a-f]{64}$/);
      const credential = credentialOf(app);
      // Where the live Lakebase credential is: only this user may open the folder and the file.
      expect(statSync(credential.dir).mode & 0o777).toBe(0o700);
      expect(statSync(credential.file).mode & 0o777).toBe(0o600);
      // The tools gateway's per-start secret, as the backend received it on the pipe.
      const gatewayOf = async () =>
        (await (await appGet("/metamcp/tools-gateway")).json()) as {
          port: string;
          secret: string;
          inEnv: boolean;
        };
      const gateway = await gatewayOf();
      expect(gateway.secret).toMatch(/^[0-9a-f]{64}$/);
      // Our module took it out of the backend's process.env at once: no process MetaMCP starts inherits it.
      expect(gateway.inEnv).toBe(false);
      // A process in the app that calls the gateway without it gets 401.
      const noSecret = await fetch(`http://127.0.0.1:${gateway.port}/api/2.0/mcp/sql`, { method: "POST" });
      expect(noSecret.status).toBe(401);
      const secrets = [
        RIG_AUTH_SECRET, // BETTER_AUTH_SECRET
        "sp-secret-xyz", // DATABRICKS_CLIENT_SECRET
        identitySecret,
        credential.dir,
        credential.token,
        "BETTER_AUTH_SECRET=",
        "METAMCP_IDENTITY_SECRET=",
        "METAMCP_PG_PASSWORD_FILE=",
        "DATABRICKS_CLIENT_SECRET=",
        gateway.secret,
        "METAMCP_TOOLS_GATEWAY_SECRET=",
      ];
      const check = async () => {
        const { pid: backendPid } = (await (await appGet("/metamcp/pid")).json()) as { pid: number };
        const children = childPids(runtimePid);
        const frontendPid = children.find((p) =>
          readFileSync(`/proc/${p}/cmdline`, "utf8").includes("server.js"),
        );
        expect(children).toContain(backendPid);
        expect(frontendPid).toBeDefined();
        for (const [who, pid] of [
          ["backend", backendPid],
          ["frontend", frontendPid!],
        ] as const) {
          const environ = environOf(pid);
          expect(environ, who).toContain("PGHOST="); // the environment is there, just without secrets
          for (const secret of secrets)
            expect(environ.includes(secret), `${who} environ holds ${secret}`).toBe(false);
        }
        // ...and the code that needs them has them: the database (the password file), better-auth and our
        // identity module (a first page answered signed in as the proxy's identity).
        expect((await appGet("/metamcp/notes?body=secret-check", { method: "POST" })).status).toBe(200);
        // The restarted backend got the same gateway secret again (it is per start of the runtime).
        expect((await gatewayOf()).secret).toBe(gateway.secret);
        const page = await viaProxy("/en/mcp-servers");
        expect(page.status).toBe(200);
        expect(await page.text()).toContain("<p id='user'>ada@example.com</p>");
        return backendPid;
      };
      const before = await check();
      // A restarted backend gets its secrets handed over again.
      await appGet("/metamcp/exit0");
      await waitFor(
        async () => {
          const res = await appGet("/metamcp/pid").catch(() => undefined);
          if (res?.status !== 200) return undefined;
          return ((await res.json()) as { pid: number }).pid !== before ? true : undefined;
        },
        { timeoutMs: 20_000, what: "the backend to be restarted" },
      );
      await check();
      // The residual risk docs/identity.md states: the runtime's own environment is what the platform started it
      // with, the service principal's secret and app.yaml's BETTER_AUTH_SECRET in it (Node cannot rewrite it).
      const runtimeEnviron = environOf(runtimePid);
      expect(runtimeEnviron).toContain("sp-secret-xyz");
      expect(runtimeEnviron).toContain(RIG_AUTH_SECRET); // app.yaml's valueFrom, the same way
      // What the runtime makes itself is in no process's environment.
      expect(runtimeEnviron).not.toContain(identitySecret);
      expect(runtimeEnviron).not.toContain(gateway.secret);
      expect(runtimeEnviron).not.toContain(credential.token);
    });

    it("Databricks tools: a real MCP client calls a managed server's tool through a MetaMCP endpoint, as the app's service principal; refusals explained; no token in any log line", async () => {
      // The workspace: its /api/2.0/mcp/… here, everything else (OIDC, credentials) the stand-in's.
      const seenTokens = new Set<string>();
      const ws = await startFakeWorkspace(async (token) => {
        seenTokens.add(token);
        const res = await fetch(`${rig.platform.workspaceUrl}/api/2.0/apps/metamcp-test`, {
          headers: { authorization: `Bearer ${token}` },
        });
        return res.status === 200;
      }, rig.platform.workspaceUrl);
      try {
        const app = startRuntime({ DATABRICKS_HOST: ws.origin });
        await waitReady(app);
        const client = new Client({ name: "agent", version: "0.0.0" });
        await client.connect(
          new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${rig.appPort}/metamcp/open/mcp`)),
        );
        const call = async (serverPath: string, tool = REGION_TOOL) => {
          const r = await client.callTool({
            name: "workspace_call",
            arguments: { url: `${ws.origin}${serverPath}`, tool, args: { country: "FR" } },
          });
          return { isError: r.isError === true, text: (r.content as { text: string }[])[0]?.text ?? "" };
        };
        // The first call may come before the keeper's first token: the gateway says so (503) meanwhile.
        const ok = await waitFor(
          async () => {
            const r = await call("/api/2.0/mcp/functions/main/tools");
            return r.isError ? undefined : r;
          },
          { timeoutMs: 20_000, what: "a tool call through the gateway" },
        );
        const answer = JSON.parse(ok.text) as { region: string; token: string };
        expect(answer.region).toBe("EMEA");
        // The service principal's token, issued by the workspace's OIDC, never one MetaMCP had.
        expect(seenTokens.has(answer.token)).toBe(true);
        // Unity Catalog's 403 is the tool's error, naming the grant (the service principal is PGUSER here).
        const denied = await call("/api/2.0/mcp/functions/main/secret");
        expect(denied.isError).toBe(true);
        expect(denied.text).toContain(`GRANT EXECUTE ON SCHEMA main.secret TO \`${db.role}\``);
        // Per-person servers with no forwarded token are refused, never answered as the app.
        const perPerson = await call("/api/2.0/mcp/functions/main/tools#identity=user");
        expect(perPerson.isError).toBe(true);
        expect(perPerson.text).toMatch(/none came with this request.*never called as the app/);
        // Outside /api/2.0/mcp/<kind>: refused, and the gateway's refusal is in the runtime's log.
        const before = ws.requests.length;
        expect((await call("/api/2.0/mcp/unknown/x")).isError).toBe(true);
        expect((await call("/api/2.0/secrets/list")).isError).toBe(true);
        expect(ws.requests.length).toBe(before);
        await client.close();
        await waitFor(
          () => (app.raw.some((l) => l.includes("databricks-tools: refused")) ? true : undefined),
          {
            timeoutMs: 5000,
            what: "the refusal's log line",
          },
        );
        const log = app.raw.join("\n");
        expect(log).toContain(
          `Databricks tools on: servers on ${new URL(ws.origin).host}/api/2.0/mcp/… run as the app's service principal ${db.role} (added or changed by the app's managers`,
        );
        expect(log).toMatch(/databricks-tools: POST functions main\.tools tools\/call → 200 as app/);
        for (const token of seenTokens) expect(log).not.toContain(token);
      } finally {
        await ws.close();
      }
    });

    it("an MCP session outlives a crash of MetaMCP's backend and a restart of the app: a client with no re-initialize logic keeps calling (issue 25)", async () => {
      let app = startRuntime();
      await waitReady(app);
      expect(app.raw.join("\n")).toContain("MCP sessions recorded in metamcp_app.databricks_mcp_sessions");
      const client = new Client({ name: "no-reinit-client", version: "1.0.0" });
      const transport = new StreamableHTTPClientTransport(
        new URL(`http://127.0.0.1:${rig.appPort}/metamcp/demo/mcp`),
        { requestInit: { headers: { "x-api-key": FAKE_METAMCP_API_KEY } } },
      );
      await client.connect(transport);
      const sessionId = transport.sessionId!;
      const echo = async (t: string) =>
        ((await client.callTool({ name: "echo", arguments: { text: t } })) as { content: { text: string }[] })
          .content[0]!.text;
      expect(await echo("before")).toBe("before");
      // The backend crashes; the supervisor restarts it. A call made while it is down waits for it.
      const before = (await (await appGet("/metamcp/pid")).json()) as { pid: number };
      await appGet("/metamcp/exit0");
      await waitFor(
        () => (app.raw.some((l) => l.includes("backend exited unexpectedly")) ? true : undefined),
        { timeoutMs: 10_000, what: "the backend's exit" },
      );
      expect(await echo("during the restart")).toBe("during the restart");
      const after = (await (await appGet("/metamcp/pid")).json()) as { pid: number };
      expect(after.pid).not.toBe(before.pid);
      // The whole app stops and starts again (a redeploy): the session is re-opened from the database.
      app.child.kill("SIGTERM");
      await app.exited;
      app = startRuntime();
      await waitReady(app);
      expect(await echo("after the app's restart")).toBe("after the app's restart");
      expect(transport.sessionId).toBe(sessionId);
      const admin = new pg.Client({ connectionString: db.adminUrl(db.database) });
      await admin.connect();
      try {
        const rows = await admin.query("SELECT * FROM metamcp_app.databricks_mcp_sessions");
        expect(rows.rows.map((r) => r.session_key)).toContain(sessionKey(sessionId));
        expect(JSON.stringify(rows.rows)).not.toContain(sessionId);
      } finally {
        await admin.end();
      }
      await client.close();
    });

    it("serves with a provisioned (legacy) Lakebase instance too", async () => {
      const app = startRuntime({
        LAKEBASE_KIND: "provisioned",
        LAKEBASE_ENDPOINT: undefined,
        LAKEBASE_INSTANCE_NAME: "metamcp-test-db",
      });
      await waitReady(app);
      expect(await (await appGet("/metamcp/fresh")).json()).toEqual({ schema: "metamcp_app" });
      expect(app.raw.join("\n")).toContain("Lakebase credential (provisioned)");
    });

    it("says its startup steps in order as its progress, and a skipped one says it was skipped and why", async () => {
      const app = startRuntime();
      await waitReady(app);
      const progress = app.raw
        .map((l) => JSON.parse(l) as { tag: string; msg: string })
        .filter((l) => l.tag === "start" && (l.msg.endsWith("…") || l.msg.includes(": skipped, ")))
        .map((l) => l.msg);
      expect(progress).toEqual([
        "app tree…",
        "app port…",
        "public URL…",
        "Lakebase instance state: skipped, Lakebase Autoscaling has no instance to wait for",
        "Lakebase credential (autoscaling)…",
        "database…",
        "connect…",
        "schema metamcp_app…",
        "migrations…",
        "tool timeouts…",
        "sign-up setting…",
        "endpoint identity table…",
        "audit table…",
        "session table…",
        "STDIO servers…",
        "Databricks tools…",
        "MetaMCP servers…",
      ]);
      expect(app.raw.join("\n")).toMatch(/"msg":"MetaMCP servers: done in \d+ ms"/);
    });

    it("restarts a child that exits with code 0 instead of taking it for success", async () => {
      const app = startRuntime();
      await waitReady(app);
      const before = (await (await appGet("/metamcp/pid")).json()) as { pid: number };
      await appGet("/metamcp/exit0");
      await waitFor(
        async () => {
          const res = await appGet("/metamcp/pid").catch(() => undefined);
          if (res?.status !== 200) return undefined;
          const now = (await res.json()) as { pid: number };
          return now.pid !== before.pid ? true : undefined;
        },
        { timeoutMs: 20_000, what: "the backend to be restarted" },
      );
      expect(app.raw.some((l) => l.includes("backend exited unexpectedly (code 0"))).toBe(true);
      expect(app.child.exitCode).toBeNull();
    });

    it("on SIGTERM finishes the request in flight, stops its children and exits 0 within 15 s", async () => {
      const app = startRuntime();
      await waitReady(app);
      const { pid: backendPid } = (await (await appGet("/metamcp/pid")).json()) as { pid: number };
      const slow = appGet("/metamcp/slow?ms=1500");
      await new Promise((r) => setTimeout(r, 200)); // let the request reach the backend
      app.child.kill("SIGTERM");
      const res = await slow;
      expect(res.status).toBe(200);
      const exit = await app.exited;
      expect(exit.code).toBe(0);
      expect(() => process.kill(backendPid, 0)).toThrow();
    });

    it("exits 2 naming the missing piece when the app tree's backend has no drizzle-orm", async () => {
      const broken = createFakeAppTree(mkdtempSync(path.join(os.tmpdir(), "mmdb-tree-nodrizzle-")), {
        withoutDrizzle: true,
      });
      try {
        const app = startRuntime({ METAMCP_ROOT: path.join(broken, "metamcp") });
        const exit = await app.exited;
        expect(exit.code).toBe(2);
        expect(app.raw.join("\n")).toMatch(/the app tree's backend has no usable drizzle-orm.*make build/);
      } finally {
        rmSync(broken, { recursive: true, force: true });
      }
    });

    it.each([
      [
        "a wrong client secret",
        { DATABRICKS_CLIENT_SECRET: "wrong" },
        4,
        /refused the app's service principal/,
      ],
      [
        "an unknown Lakebase endpoint",
        { LAKEBASE_ENDPOINT: "projects/x/branches/y/endpoints/z" },
        4,
        /does not exist/,
      ],
      [
        "an unknown provisioned instance",
        {
          LAKEBASE_KIND: "provisioned",
          LAKEBASE_ENDPOINT: undefined,
          LAKEBASE_INSTANCE_NAME: "no-such-instance",
        },
        4,
        /no-such-instance/,
      ],
      [
        "an unreachable workspace",
        { DATABRICKS_HOST: "http://127.0.0.1:9" },
        4,
        /cannot reach http:\/\/127\.0\.0\.1:9/,
      ],
      [
        "a placeholder auth secret",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: the literal placeholder an unresolved valueFrom leaves
        { BETTER_AUTH_SECRET: "${BETTER_AUTH_SECRET}" },
        2,
        /BETTER_AUTH_SECRET is a placeholder/,
      ],
      ["no PGHOST", { PGHOST: undefined }, 2, /PGHOST is not set/],
      [
        "a database that is down",
        { PGPORT: "9", METAMCP_DB_WAIT_SECONDS: "2" },
        4,
        /cannot connect to Lakebase.*ECONNREFUSED/,
      ],
    ])("exits non-zero with a clear reason on %s", async (_what, overrides, code, message) => {
      const app = startRuntime(overrides);
      const exit = await app.exited;
      expect(exit.code).toBe(code);
      expect(app.raw.join("\n")).toMatch(message);
      expect(app.raw.join("\n")).not.toContain("sp-secret-xyz");
    });
  });

  describe("telemetry (docs/audit.md)", () => {
    const SECRET_TEXT = "the-plans-3f9a";
    /** A real SDK client through the app's one port, calling the fake backend's echo tool. */
    async function callEcho(): Promise<void> {
      const client = new Client({ name: "telemetry-test", version: "1.0.0" });
      await client.connect(
        new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${rig.appPort}/metamcp/demo/mcp`), {
          requestInit: { headers: { "x-api-key": FAKE_METAMCP_API_KEY } },
        }),
      );
      try {
        const r = await client.callTool({ name: "echo", arguments: { text: SECRET_TEXT } });
        expect(r.content).toEqual([{ type: "text", text: SECRET_TEXT }]);
      } finally {
        await client.close();
      }
    }

    it("on, with the collector the platform names (OTEL_EXPORTER_OTLP_*): every MCP request is a span there", async () => {
      const receiver = await startOtlpReceiver();
      try {
        const app = startRuntime({
          METAMCP_TELEMETRY: "otlp",
          // As the Apps platform sets them when the app's telemetry export is on (there: gRPC on localhost:4314).
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.base,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
          OTEL_SERVICE_NAME: "metamcp-test",
          OTEL_RESOURCE_ATTRIBUTES: "workspace.id=1234567890123456,app.name=metamcp-test",
        });
        await waitReady(app);
        expect(app.raw.join("\n")).toContain(
          `telemetry on: a span per MCP request over OTLP (http/json) to ${receiver.url}, service metamcp-test`,
        );
        await callEcho();
        const spans = await waitFor(
          () => (receiver.spans.some((s) => s.name === "tools/call echo") ? receiver.spans : undefined),
          { timeoutMs: 20_000, intervalMs: 50, what: "the tool call's span at the collector" },
        );
        expect(spans.map((s) => s.name)).toEqual(["initialize", "tools/call echo"]);
        const call = spans[1]!;
        expect(call.attributes).toMatchObject({
          "mcp.method.name": "tools/call",
          "gen_ai.tool.name": "echo",
          "metamcp.endpoint": "demo",
          "metamcp.outcome": "ok",
        });
        expect(call.resource).toMatchObject({
          "service.name": "metamcp-test",
          "workspace.id": "1234567890123456",
        });
        const sent = receiver.bodies.join("\n");
        expect(sent).not.toContain(SECRET_TEXT);
        expect(sent).not.toContain(FAKE_METAMCP_API_KEY);
      } finally {
        await receiver.close();
      }
    });

    it("with the audit off, the spans still come (the observer runs for them alone)", async () => {
      const receiver = await startOtlpReceiver();
      try {
        const app = startRuntime({
          METAMCP_AUDIT: "off",
          METAMCP_TELEMETRY: "otlp",
          METAMCP_TELEMETRY_ENDPOINT: receiver.url,
          METAMCP_TELEMETRY_PROTOCOL: "http/json",
        });
        await waitReady(app);
        expect(app.raw.join("\n")).toContain("tool-call audit off (METAMCP_AUDIT=off)");
        await callEcho();
        await waitFor(() => (receiver.spans.some((s) => s.name === "tools/call echo") ? true : undefined), {
          timeoutMs: 20_000,
          intervalMs: 50,
          what: "the tool call's span at the collector",
        });
        // The service is the app's own name when the platform names none.
        expect(receiver.spans[0]!.resource["service.name"]).toBe(rig.platform.appEnv.DATABRICKS_APP_NAME);
        expect(receiver.bodies.join("\n")).not.toContain(SECRET_TEXT);
      } finally {
        await receiver.close();
      }
    });

    it("off by default, even where the platform names a collector: nothing is ever sent", async () => {
      const receiver = await startOtlpReceiver();
      try {
        const app = startRuntime({
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.base,
          OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        });
        await waitReady(app);
        await callEcho();
        // A stop sends what telemetry would still hold: after the exit, anything it had made would be there.
        app.child.kill("SIGTERM");
        expect((await app.exited).code).toBe(0);
        expect(receiver.bodies).toEqual([]);
        expect(app.raw.join("\n")).not.toContain("telemetry");
      } finally {
        await receiver.close();
      }
    });
  });

  describe("migrations", () => {
    it("run once when two instances start together (advisory lock), and are a no-op after", async () => {
      const folder = path.join(rig.treeDir, "metamcp/apps/backend/drizzle");
      const { token } = rig.platform.issueDatabaseCredential(60);
      const clients = [0, 1, 2].map(
        () =>
          new pg.Client({
            connectionString: db.roleUrl(token),
            options: "-c search_path=race_schema,public",
          }),
      );
      await Promise.all(clients.map((c) => c.connect()));
      try {
        await clients[0]!.query("CREATE SCHEMA IF NOT EXISTS race_schema");
        const results = await Promise.all(
          clients
            .slice(0, 2)
            .map((c) =>
              runMigrations(c, { migrationsFolder: folder, schema: "race_schema", log: silentLogger }),
            ),
        );
        const migrations = (
          JSON.parse(readFileSync(path.join(folder, "meta/_journal.json"), "utf8")) as { entries: unknown[] }
        ).entries.length;
        expect(results.map((r) => r.applied).sort()).toEqual([0, migrations]);
        const again = await runMigrations(clients[2]!, {
          migrationsFolder: folder,
          schema: "race_schema",
          log: silentLogger,
        });
        expect(again).toEqual({ applied: 0, total: migrations });

        // MetaMCP's tool timeouts: seeded under the proxy's cut, a value chosen in Settings kept.
        await clients[2]!.query("INSERT INTO race_schema.config (id, value) VALUES ('MCP_TIMEOUT', '30000')");
        expect(await seedMcpTimeouts(clients[2]!, "race_schema")).toEqual({
          MCP_TIMEOUT: 30_000,
          MCP_MAX_TOTAL_TIMEOUT: MCP_TOOL_TIMEOUT_MS,
        });
        expect(MCP_TOOL_TIMEOUT_MS).toBeGreaterThanOrEqual(100_000);
        expect(MCP_TOOL_TIMEOUT_MS).toBeLessThan(120_000);
        expect(await seedMcpTimeouts(clients[2]!, "no_such_schema")).toBeUndefined();
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
    });
  });
});
