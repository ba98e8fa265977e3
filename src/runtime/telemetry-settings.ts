/** The telemetry's settings (docs/audit.md "Telemetry"), read by env.ts; no OpenTelemetry code here. */

/** METAMCP_TELEMETRY. */
export const TELEMETRY_MODES = ["off", "otlp"] as const;
/** OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, the values the OpenTelemetry specification defines. */
export const OTLP_PROTOCOLS = ["grpc", "http/protobuf", "http/json"] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];

/** Where spans go and what they say about the app. */
export interface TelemetrySettings {
  protocol: OtlpProtocol;
  /** The traces URL: `…/v1/traces` for OTLP/HTTP, the collector's address for gRPC. */
  url: string;
  serviceName: string;
  resourceAttributes: Record<string, string>;
  /** METAMCP_TELEMETRY_PRINCIPAL=on: spans carry `enduser.id` (who called). */
  principal: boolean;
}
