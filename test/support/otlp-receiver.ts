import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { expect } from "vitest";

/**
 * A real OTLP/HTTP collector on 127.0.0.1 for the telemetry's tests: the exporter's JSON encoding, decoded
 * with JSON.parse (OTLP's own JSON mapping), every body kept so a test can search the bytes sent.
 */

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
}
interface OtlpSpan {
  traceId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: OtlpValue }[];
  status?: { code?: number; message?: string };
}
export interface ReceivedSpan {
  traceId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number>;
  status: { code?: number; message?: string };
  resource: Record<string, string | number>;
}

const otlpValue = (v: OtlpValue) => v.stringValue ?? Number(v.intValue);
const attributesOf = (list: { key: string; value: OtlpValue }[] = []) =>
  Object.fromEntries(list.map((a) => [a.key, otlpValue(a.value)]));

/** An OTLP/HTTP collector: keeps every body it was sent, and the spans in them (JSON encoding). */
export async function startOtlpReceiver(answer: "ok" | "hang" = "ok") {
  const bodies: string[] = [];
  const spans: ReceivedSpan[] = [];
  const hanging: IncomingMessage[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      bodies.push(body);
      if (answer === "hang") return void hanging.push(req);
      expect(req.url).toBe("/v1/traces");
      expect(req.headers["content-type"]).toMatch(/^application\/json/);
      const decoded = JSON.parse(body) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: OtlpValue }[] };
          scopeSpans: { spans: OtlpSpan[] }[];
        }[];
      };
      for (const rs of decoded.resourceSpans)
        for (const ss of rs.scopeSpans)
          for (const s of ss.spans)
            spans.push({
              traceId: s.traceId,
              parentSpanId: s.parentSpanId,
              name: s.name,
              kind: s.kind,
              startMs: Number(BigInt(s.startTimeUnixNano) / 1000n) / 1000,
              endMs: Number(BigInt(s.endTimeUnixNano) / 1000n) / 1000,
              attributes: attributesOf(s.attributes),
              status: s.status ?? {},
              resource: attributesOf(rs.resource.attributes),
            });
      res.writeHead(200, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    /** What OTEL_EXPORTER_OTLP_ENDPOINT names: the collector, to which OTLP/HTTP adds /v1/traces. */
    base,
    url: `${base}/v1/traces`,
    bodies,
    spans,
    close: () => {
      for (const r of hanging) r.socket.destroy();
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
