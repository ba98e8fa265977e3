import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { waitFor } from "../../src/retry.js";
import type { AuditRow } from "../../src/runtime/audit-rows.js";
import { startTelemetry } from "../../src/runtime/telemetry.js";
import type { OtlpProtocol } from "../../src/runtime/telemetry-settings.js";
import { PROJECT_ROOT } from "../support/cli.js";

/**
 * What the app ships (`npm run build`: dist/runtime/start.mjs and telemetry.mjs): the OpenTelemetry SDK only
 * in telemetry.mjs, which start.mjs loads when telemetry is on; and that bundle exporting over each OTLP
 * protocol, gRPC first (what the Apps platform's collector is said to speak: OTEL_EXPORTER_OTLP_PROTOCOL=grpc).
 */

const START = path.join(PROJECT_ROOT, "dist/runtime/start.mjs");
const TELEMETRY = path.join(PROJECT_ROOT, "dist/runtime/telemetry.mjs");

const row = (tool: string): AuditRow => ({
  calledAt: new Date(),
  principal: "ada@example.com",
  endpoint: "adas",
  namespace: null,
  server: "tools",
  tool,
  method: "tools/call",
  durationMs: 3,
  outcome: "ok",
  error: null,
  client: "agent/1.0",
  session: "AbCdEfGhIjKlMnOp",
  requestBytes: 10,
  responseBytes: 20,
  arguments: null,
});

async function exportThrough(protocol: OtlpProtocol, url: string) {
  const warnings: string[] = [];
  const telemetry = await startTelemetry(
    { protocol, url, serviceName: "metamcp-bundle", resourceAttributes: {}, principal: false },
    { modulePath: TELEMETRY, warn: (m) => warnings.push(m), flushEveryMs: 20, exportTimeoutMs: 5_000 },
  );
  onTestFinished(() => telemetry.close(500));
  telemetry.record(row("echo"));
  telemetry.record(row("fail"));
  await waitFor(() => (telemetry.stats().exported + telemetry.stats().dropped >= 2 ? true : undefined), {
    timeoutMs: 10_000,
    intervalMs: 20,
    what: `2 spans exported over ${protocol}`,
  });
  expect(warnings).toEqual([]);
  expect(telemetry.stats()).toMatchObject({ exported: 2, dropped: 0 });
}

describe("the runtime bundles", () => {
  it("start.mjs holds no OpenTelemetry code: with telemetry off, nothing of it is loaded", () => {
    const start = readFileSync(START, "utf8");
    for (const sdk of ["@opentelemetry", "BatchSpanProcessor", "OTLPTraceExporter", "grpc-js"])
      expect(start).not.toContain(sdk);
    expect(start).toContain("telemetry.mjs");
    expect(readFileSync(TELEMETRY, "utf8")).toContain("BatchSpanProcessor");
  });

  it("telemetry.mjs exports over gRPC (TraceService/Export on HTTP/2)", async () => {
    const calls: { path: string; contentType: string; body: Buffer }[] = [];
    const server = http2.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        calls.push({
          path: req.url,
          contentType: String(req.headers["content-type"]),
          body: Buffer.concat(chunks),
        });
        // An empty ExportTraceServiceResponse: one uncompressed gRPC message of 0 bytes, then status 0.
        res.writeHead(200, { "content-type": "application/grpc" });
        res.addTrailers({ "grpc-status": "0" });
        res.end(Buffer.alloc(5));
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
    await exportThrough("grpc", `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    expect(calls[0]!.path).toBe("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    expect(calls[0]!.contentType).toBe("application/grpc");
    const bytes = Buffer.concat(calls.map((c) => c.body)).toString("latin1");
    expect(bytes).toContain("tools/call tools__echo");
    expect(bytes).toContain("tools/call tools__fail");
    expect(bytes).toContain("metamcp-bundle");
  });

  it("telemetry.mjs exports over OTLP/HTTP protobuf", async () => {
    const bodies: { url: string; contentType: string; body: Buffer }[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        bodies.push({
          url: req.url ?? "",
          contentType: String(req.headers["content-type"]),
          body: Buffer.concat(chunks),
        });
        res.writeHead(200, { "content-type": "application/x-protobuf" });
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
    await exportThrough(
      "http/protobuf",
      `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    );
    expect(bodies[0]).toMatchObject({ url: "/v1/traces", contentType: "application/x-protobuf" });
    expect(Buffer.concat(bodies.map((b) => b.body)).toString("latin1")).toContain("tools/call tools__echo");
  });
});
