import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../src/retry.js";
import { AuditObserver } from "../../src/runtime/audit-observer.js";
import { type AuditRow, sessionHash } from "../../src/runtime/audit-rows.js";
import { createRouter, type Router } from "../../src/runtime/router.js";
import {
  fanOut,
  startTelemetry,
  type Telemetry,
  type TelemetrySettings,
} from "../../src/runtime/telemetry.js";
import { ADA, type Backend, BOB, overSse, startBackend, streamable } from "../support/mcp-endpoints.js";
import { startOtlpReceiver } from "../support/otlp-receiver.js";

/**
 * Issue 24, "Telemetry where the platform takes it": the router in front of the MetaMCP-shaped backend, its
 * audit rows fanned out to the telemetry, whose exporter (the real OpenTelemetry SDK, OTLP/HTTP in its JSON
 * mode) sends to a real OTLP receiver on 127.0.0.1. Real SDK clients call tools as two people.
 */

const EXPORT_MODULE = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../src/runtime/telemetry-export.ts",
);
const SECRET_ARGUMENT = "plans-for-the-heist-4c1d";

/** A port nothing listens on: a collector that is down. */
async function deadUrl(): Promise<string> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return `http://127.0.0.1:${port}/v1/traces`;
}

const settings = (url: string, principal = false): TelemetrySettings => ({
  protocol: "http/json",
  url,
  serviceName: "metamcp-test",
  resourceAttributes: { "app.name": "metamcp-test", "workspace.id": "1234" },
  principal,
});

interface Rig {
  router: Router;
  url: string;
  telemetry: Telemetry;
  rows: AuditRow[];
  warnings: string[];
}

describe("every MCP request through the router is an OpenTelemetry span, when telemetry is on", () => {
  let backend: Backend;
  const rigs: Rig[] = [];

  /** The router with the audit's observer, whose rows go to a row list (the writer's place) and the telemetry. */
  async function startRig(
    telemetrySettings: TelemetrySettings,
    tuning: { exportTimeoutMs?: number } = {},
  ): Promise<Rig> {
    const warnings: string[] = [];
    const rows: AuditRow[] = [];
    const list = { record: (row: AuditRow) => void rows.push(row) };
    const telemetry = await startTelemetry(telemetrySettings, {
      modulePath: EXPORT_MODULE,
      warn: (m) => warnings.push(m),
      flushEveryMs: 50,
      ...tuning,
    });
    const audit = new AuditObserver({
      sink: fanOut([() => list, () => telemetry]),
      arguments: "off",
    });
    const router = createRouter({
      backendPort: backend.port,
      frontendPort: 1,
      trustedProxyAddresses: ["127.0.0.1"],
      audit,
    });
    router.ready = true;
    await new Promise<void>((r) => router.server.listen(0, "127.0.0.1", () => r()));
    const rig = {
      router,
      url: `http://127.0.0.1:${(router.server.address() as AddressInfo).port}`,
      telemetry,
      rows,
      warnings,
    };
    rigs.push(rig);
    return rig;
  }

  beforeAll(async () => {
    backend = await startBackend();
  });
  afterEach(async () => {
    for (const rig of rigs.splice(0)) {
      await rig.router.close(100);
      await rig.telemetry.close(500);
    }
  });
  afterAll(() => {
    backend?.server.close();
    backend?.server.closeAllConnections();
  });

  it("names, kinds, times and attributes follow the MCP semantic conventions; the session is hashed", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const rig = await startRig(settings(receiver.url));
      const ada = await streamable(rig.url, ADA);
      const bob = await overSse(rig.url, BOB);
      try {
        await ada.client.listTools();
        await ada.client.callTool({ name: "tools__echo", arguments: { text: SECRET_ARGUMENT } });
        expect((await ada.client.callTool({ name: "tools__fail", arguments: {} })).isError).toBe(true);
        await bob.client.callTool({ name: "tools__echo", arguments: { text: "bob's" } });
      } finally {
        await ada.client.close();
        await bob.client.close();
      }
      const spans = await waitFor(() => (receiver.spans.length >= 6 ? receiver.spans : undefined), {
        timeoutMs: 10_000,
        intervalMs: 25,
        what: "6 spans at the receiver",
      });
      // One row, two sinks: every row the audit writer would get is a span.
      expect(spans).toHaveLength(rig.rows.length);

      const adaSession = sessionHash(ada.sessionId);
      const adas = spans.filter((s) => s.attributes["mcp.session.id"] === adaSession);
      expect(adas.map((s) => s.name)).toEqual([
        "initialize",
        "tools/list",
        "tools/call tools__echo",
        "tools/call tools__fail",
      ]);
      for (const s of spans) {
        expect(s.kind).toBe(2); // SERVER
        expect(s.attributes["network.transport"]).toBe("tcp");
        expect(s.attributes["mcp.method.name"]).toBe(s.name.split(" ")[0]);
        expect(s.attributes["mcp.session.id"]).toMatch(/^[A-Za-z0-9_-]{16}$/);
        expect(s.attributes["enduser.id"]).toBeUndefined(); // METAMCP_TELEMETRY_PRINCIPAL off
        expect(s.resource["service.name"]).toBe("metamcp-test");
        expect(s.resource["workspace.id"]).toBe("1234");
      }
      const [, , echo, fail] = adas;
      expect(echo!.attributes).toMatchObject({
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "tools__echo",
        "gen_ai.operation.name": "execute_tool",
        "metamcp.endpoint": ADA.endpoint,
        "metamcp.server": "tools",
        "metamcp.outcome": "ok",
        "metamcp.client": "agent-of-ada/2.1.0",
      });
      expect(echo!.attributes["error.type"]).toBeUndefined();
      expect(echo!.status.code ?? 0).toBe(0); // unset
      expect(fail!.attributes).toMatchObject({ "error.type": "tool_error", "metamcp.outcome": "tool_error" });
      expect(fail!.status.code).toBe(2); // ERROR
      // The span covers the row's time: from the request's arrival to its answer passing the router.
      const echoRow = rig.rows.find((r) => r.tool === "echo" && r.principal === ADA.email)!;
      expect(echo!.startMs).toBeCloseTo(echoRow.calledAt.getTime(), 0);
      expect(echo!.endMs - echo!.startMs).toBeCloseTo(echoRow.durationMs, 0);

      // Not one exported byte holds a session id, an argument, a key, a person or a tool's error text.
      const exported = receiver.bodies.join("\n");
      for (const never of [
        ada.sessionId,
        SECRET_ARGUMENT,
        ADA.key,
        BOB.key,
        ADA.email,
        BOB.email,
        "the database said no",
      ])
        expect(exported).not.toContain(never);
      // The collector's answer settles the export (it may still be on its way when the spans are read).
      await waitFor(() => (rig.telemetry.stats().pending === 0 ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 10,
        what: "the exports to settle",
      });
      expect(rig.telemetry.stats()).toMatchObject({ exported: spans.length, dropped: 0, pending: 0 });
      expect(rig.warnings).toEqual([]);
    } finally {
      await receiver.close();
    }
  });

  it("METAMCP_TELEMETRY_PRINCIPAL=on: spans say who called (enduser.id)", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const rig = await startRig(settings(receiver.url, true));
      const ada = await streamable(rig.url, ADA);
      await ada.client.callTool({ name: "tools__echo", arguments: { text: "hi" } });
      await ada.client.close();
      const spans = await waitFor(() => (receiver.spans.length >= 2 ? receiver.spans : undefined), {
        timeoutMs: 10_000,
        intervalMs: 25,
        what: "2 spans at the receiver",
      });
      expect(spans.map((s) => s.attributes["enduser.id"])).toEqual([ADA.email, ADA.email]);
    } finally {
      await receiver.close();
    }
  });

  it("attacker: a caller's trace context (traceparent, _meta) never makes our spans part of a trace they chose", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const rig = await startRig(settings(receiver.url));
      const theirs = { trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "00f067aa0ba902b7" };
      const traceparent = `00-${theirs.trace}-${theirs.span}-01`;
      const ada = await streamable(rig.url, ADA, {
        traceparent,
        "x-otlp-endpoint": "http://evil.example/v1/traces",
      });
      await ada.client.callTool({
        name: "tools__echo",
        arguments: { text: "hi" },
        _meta: { traceparent },
      });
      await ada.client.close();
      const spans = await waitFor(() => (receiver.spans.length >= 2 ? receiver.spans : undefined), {
        timeoutMs: 10_000,
        intervalMs: 25,
        what: "2 spans at the receiver",
      });
      for (const s of spans) {
        expect(s.traceId).not.toBe(theirs.trace);
        expect(s.parentSpanId ?? "").toBe("");
      }
      // The one destination is the deployer's: nothing a caller sends names another.
      expect(receiver.bodies.length).toBeGreaterThan(0);
      await waitFor(() => (rig.telemetry.stats().exported === 2 ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 10,
        what: "both spans exported to the deployer's collector",
      });
    } finally {
      await receiver.close();
    }
  });

  it("a collector that is down never fails a call: the spans are dropped, counted, and said once", async () => {
    const rig = await startRig(settings(await deadUrl()), { exportTimeoutMs: 1_500 });
    const ada = await streamable(rig.url, ADA);
    try {
      for (let i = 0; i < 20; i++) {
        const r = await ada.client.callTool({ name: "tools__echo", arguments: { text: `call ${i}` } });
        expect(r.content).toEqual([{ type: "text", text: `call ${i}` }]);
      }
    } finally {
      await ada.client.close();
    }
    await waitFor(() => (rig.telemetry.stats().dropped >= 21 ? true : undefined), {
      timeoutMs: 10_000,
      intervalMs: 25,
      what: "21 spans dropped",
      onTimeout: () =>
        new Error(
          `stats ${JSON.stringify(rig.telemetry.stats())} rows ${rig.rows.length} warnings ${rig.warnings}`,
        ),
    });
    expect(rig.telemetry.stats()).toMatchObject({ exported: 0, dropped: 21, pending: 0 });
    expect(rig.warnings).toHaveLength(1);
    expect(rig.warnings[0]).toMatch(
      /^telemetry: dropped \d+ span\(s\) \(the collector at http:\/\/127\.0\.0\.1:\d+\/v1\/traces did not take them: /,
    );
    expect(rig.warnings[0]).toContain("Tool calls are not affected");
  });

  it("a collector that never answers does not delay a call: calls end while their spans are still being sent", async () => {
    const receiver = await startOtlpReceiver("hang");
    try {
      const rig = await startRig(settings(receiver.url), { exportTimeoutMs: 5_000 });
      const ada = await streamable(rig.url, ADA);
      // The first batch (initialize) is in the collector's hands, unanswered.
      await waitFor(() => (receiver.bodies.length >= 1 ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 10,
        what: "the first export to reach the collector",
      });
      for (let i = 0; i < 10; i++)
        await ada.client.callTool({ name: "tools__echo", arguments: { text: "x" } });
      await ada.client.close();
      // Ten calls are over and that export has not settled yet: no call waited for it.
      expect(rig.telemetry.stats()).toMatchObject({ exported: 0, dropped: 0 });
      expect(rig.telemetry.stats().pending).toBeGreaterThanOrEqual(11);
      await waitFor(() => (rig.telemetry.stats().dropped >= 1 ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 25,
        what: "the hanging export to time out and be counted",
      });
      expect(rig.warnings).toHaveLength(1);
    } finally {
      await receiver.close();
    }
  });
  it("on stop, spans still out get a short time, then count as dropped, once, and are said", async () => {
    const receiver = await startOtlpReceiver("hang");
    try {
      const warnings: string[] = [];
      const telemetry = await startTelemetry(settings(receiver.url), {
        modulePath: EXPORT_MODULE,
        warn: (m) => warnings.push(m),
        flushEveryMs: 10,
        exportTimeoutMs: 30_000,
      });
      const row: AuditRow = {
        calledAt: new Date(),
        principal: ADA.email,
        endpoint: ADA.endpoint,
        namespace: null,
        server: "tools",
        tool: "echo",
        method: "tools/call",
        durationMs: 2,
        outcome: "ok",
        error: null,
        client: null,
        session: null,
        requestBytes: 10,
        responseBytes: 10,
        arguments: null,
      };
      for (let i = 0; i < 3; i++) telemetry.record(row);
      await waitFor(() => (receiver.bodies.length >= 1 ? true : undefined), {
        timeoutMs: 10_000,
        intervalMs: 10,
        what: "the export to reach the collector",
      });
      const t0 = performance.now();
      await telemetry.close(300);
      expect(performance.now() - t0).toBeLessThan(5_000);
      expect(telemetry.stats()).toEqual({ exported: 0, dropped: 3, pending: 0 });
      expect(warnings).toEqual([expect.stringContaining("(the app stopped before they were sent)")]);
      // Once stopping, a span is dropped at once.
      telemetry.record(row);
      expect(telemetry.stats()).toEqual({ exported: 0, dropped: 4, pending: 0 });
    } finally {
      await receiver.close();
    }
  });
});
