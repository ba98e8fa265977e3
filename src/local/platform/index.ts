import type { Config } from "../../config/load.js";
import type { Logger } from "../../log/logger.js";
import type { EmbeddedPostgresHandle } from "../postgres.js";
import type { LocalSecrets } from "../state.js";

export interface StartPlatformOptions {
  config: Config;
  secrets: LocalSecrets;
  postgres: EmbeddedPostgresHandle;
  proxyPort: number;
  appPort: number;
  credentialTtlSeconds: number;
  log: Logger;
}

export interface LocalPlatform {
  workspaceUrl: string;
  workspacePort: number;
  appUrl: string;
  /** Exactly what the Apps platform injects into the app's process (plus app.yaml's env). */
  appEnv: Record<string, string>;
  /** A token for the user's browser or MCP client, accepted by the local Apps proxy. */
  userToken: string;
  logs: { push(source: string, line: string): void };
  close(): Promise<void>;
}

export async function startPlatform(_options: StartPlatformOptions): Promise<LocalPlatform> {
  throw new Error("the local Databricks stand-in is being assembled");
}
