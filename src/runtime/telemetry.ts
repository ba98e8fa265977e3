import { pathToFileURL } from "node:url";
import type { AuditSink } from "./audit-observer.js";
import type { AuditRow } from "./audit-rows.js";
import type { SpanSink, SpanSinkOptions, SpanSinkStats } from "./telemetry-export.js";
import type { TelemetrySettings } from "./telemetry-settings.js";
import { spanOfRow } from "./telemetry-spans.js";

export type { TelemetrySettings } from "./telemetry-settings.js";

/**
 * OpenTelemetry spans of the audit's rows (docs/audit.md "Telemetry"): one SERVER span per MCP request the
 * router saw, after the MCP semantic conventions, sent over OTLP to the app's telemetry destination (the
 * Apps telemetry export to Unity Catalog, whose collector the platform names in OTEL_EXPORTER_OTLP_ENDPOINT,
 * or a collector the deployer names). Off by default; when off nothing of OpenTelemetry is loaded: the SDK
 * lives in a bundle of its own (runtime/telemetry.mjs, from telemetry-export.ts) imported only here.
 */

export interface Telemetry extends AuditSink {
  stats(): SpanSinkStats;
  flush(): Promise<void>;
  close(timeoutMs: number): Promise<void>;
}

export interface StartTelemetryOptions
  extends Partial<Omit<SpanSinkOptions, "protocol" | "url" | "serviceName" | "resourceAttributes" | "warn">> {
  /** runtime/telemetry.mjs beside the runtime bundle (or telemetry-export.ts, from the sources). */
  modulePath: string;
  warn: (message: string) => void;
}

export async function startTelemetry(
  settings: TelemetrySettings,
  options: StartTelemetryOptions,
): Promise<Telemetry> {
  const { modulePath, ...tuning } = options;
  // A path the bundler does not follow: the SDK stays out of runtime/start.mjs.
  const mod = (await import(pathToFileURL(modulePath).href)) as typeof import("./telemetry-export.js");
  const sink: SpanSink = mod.createSpanSink({
    ...tuning,
    protocol: settings.protocol,
    url: settings.url,
    serviceName: settings.serviceName,
    resourceAttributes: settings.resourceAttributes,
  });
  const principal = settings.principal;
  return {
    record: (row: AuditRow) => sink.record(spanOfRow(row, { principal })),
    stats: () => sink.stats(),
    flush: () => sink.flush(),
    close: (timeoutMs) => sink.close(timeoutMs),
  };
}

/** One row to every sink (the audit writer and the telemetry): no allocation per row, each as cheap as its `record`. */
export function fanOut(sinks: ReadonlyArray<() => AuditSink | undefined>): AuditSink {
  return {
    record(row) {
      for (const sink of sinks) sink()?.record(row);
    },
  };
}
