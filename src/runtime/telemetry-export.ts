import { ROOT_CONTEXT, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import { OTLPTraceExporter as GrpcTraceExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as JsonTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { OtlpProtocol } from "./telemetry-settings.js";
import type { SpanData } from "./telemetry-spans.js";

/**
 * The OpenTelemetry side of the telemetry (telemetry.ts): its own bundle (runtime/telemetry.mjs), loaded only
 * when METAMCP_TELEMETRY is on, so the SDK costs nothing (not a byte loaded) when it is off.
 *
 * Never in a call's way: `record` only starts and ends a span, which the SDK's batch processor queues; at most
 * `maxQueue` spans wait (queued or being sent), past that a span is dropped and counted. A failed or timed-out
 * export drops its batch, counted. Drops are said in a warning at once, then at most every `warnEveryMs`.
 */
export interface SpanSinkOptions {
  protocol: OtlpProtocol;
  /** The traces URL: `…/v1/traces` for OTLP/HTTP, the collector's address for gRPC. */
  url: string;
  serviceName: string;
  serviceVersion?: string;
  resourceAttributes: Record<string, string>;
  warn: (message: string) => void;
  maxQueue?: number;
  batchSize?: number;
  flushEveryMs?: number;
  exportTimeoutMs?: number;
  warnEveryMs?: number;
}

export interface SpanSinkStats {
  exported: number;
  dropped: number;
  pending: number;
}

export interface SpanSink {
  record(span: SpanData): void;
  stats(): SpanSinkStats;
  flush(): Promise<void>;
  close(timeoutMs: number): Promise<void>;
}

/**
 * Headers (OTEL_EXPORTER_OTLP_HEADERS, _TRACES_HEADERS), compression, certificates and the rest of the standard
 * OTEL_EXPORTER_OTLP_* settings are read by the exporter itself; the URL is ours (validated in env.ts).
 */
function otlpExporter(protocol: OtlpProtocol, url: string, timeoutMillis: number): SpanExporter {
  if (protocol === "grpc") return new GrpcTraceExporter({ url, timeoutMillis });
  if (protocol === "http/json") return new JsonTraceExporter({ url, timeoutMillis });
  return new ProtoTraceExporter({ url, timeoutMillis });
}

/** Counts what each export settled as: sent, or dropped (the batch processor does not retry a failed batch). */
class CountingExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly settled: (count: number, result: ExportResult) => void,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    try {
      this.inner.export(spans, (result) => {
        this.settled(spans.length, result);
        done(result);
      });
    } catch (error) {
      const result = { code: ExportResultCode.FAILED, error: error as Error };
      this.settled(spans.length, result);
      done(result);
    }
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

export function createSpanSink(options: SpanSinkOptions): SpanSink {
  const maxQueue = options.maxQueue ?? 2048;
  const warnEveryMs = options.warnEveryMs ?? 30_000;
  let recorded = 0;
  let settledCount = 0;
  let exported = 0;
  let dropped = 0;
  let droppedUnwarned = 0;
  let lastReason = "";
  let lastWarnAt = Number.NEGATIVE_INFINITY;
  let closed = false;
  let settledAll = false;

  const warnDropped = (force: boolean) => {
    if (droppedUnwarned === 0) return;
    const now = Date.now();
    if (!force && now - lastWarnAt < warnEveryMs) return;
    lastWarnAt = now;
    options.warn(
      `telemetry: dropped ${droppedUnwarned} span(s) (${lastReason}); ${dropped} dropped since start, ${exported} exported. Tool calls are not affected (docs/audit.md)`,
    );
    droppedUnwarned = 0;
  };
  const drop = (count: number, reason: string) => {
    dropped += count;
    droppedUnwarned += count;
    lastReason = reason;
    warnDropped(false);
  };

  const exporter = new CountingExporter(
    otlpExporter(options.protocol, options.url, options.exportTimeoutMs ?? 10_000),
    (count, result) => {
      // After close, what was still out is counted dropped already.
      if (settledAll) return;
      settledCount += count;
      if (result.code === ExportResultCode.SUCCESS) exported += count;
      else
        drop(
          count,
          // The exporter's error names the URL and the failure, never a header value.
          `the collector at ${options.url} did not take them: ${String(result.error?.message ?? "export failed").slice(0, 200)}`,
        );
    },
  );
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      ...options.resourceAttributes,
      [ATTR_SERVICE_NAME]: options.serviceName,
      ...(options.serviceVersion ? { [ATTR_SERVICE_VERSION]: options.serviceVersion } : {}),
    }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        // Ours bounds first (below), so the processor never drops on its own, uncounted.
        maxQueueSize: maxQueue + 1,
        maxExportBatchSize: options.batchSize ?? 512,
        scheduledDelayMillis: options.flushEveryMs ?? 1000,
        exportTimeoutMillis: (options.exportTimeoutMs ?? 10_000) + 1000,
      }),
    ],
  });
  const tracer = provider.getTracer("metamcp-databricks", options.serviceVersion);

  return {
    record(span) {
      if (closed) return drop(1, "the app is stopping");
      if (recorded - settledCount >= maxQueue) return drop(1, `the span queue is full (${maxQueue} spans)`);
      recorded++;
      const s = tracer.startSpan(
        span.name,
        { kind: SpanKind.SERVER, startTime: span.startTimeMs, attributes: span.attributes },
        ROOT_CONTEXT,
      );
      if (span.error) s.setStatus({ code: SpanStatusCode.ERROR, message: span.error.message });
      s.end(span.endTimeMs);
    },
    stats: () => ({ exported, dropped, pending: recorded - settledCount }),
    async flush() {
      await provider.forceFlush().catch(() => {});
      warnDropped(false);
    },
    async close(timeoutMs) {
      closed = true;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        provider.shutdown().catch(() => {}),
        new Promise<void>((r) => {
          timer = setTimeout(r, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
      settledAll = true;
      const unsent = recorded - settledCount;
      settledCount = recorded;
      if (unsent > 0) drop(unsent, "the app stopped before they were sent");
      warnDropped(true);
    },
  };
}
