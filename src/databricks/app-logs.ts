import type { Config } from "../config/load.js";
import { appPublicUrl } from "./apps.js";
import { type AppLogEntry, streamLogs } from "./logs.js";
import { connectWorkspace, oauthToken } from "./workspace.js";

export interface AppLogsOptions {
  follow: boolean;
  search?: string;
  /** Without follow: only the last N entries (held until the stream ends). */
  tail?: number;
  signal: AbortSignal;
  onEntry: (e: AppLogEntry) => void;
  onReconnect?: (attempt: number, delayMs: number, why: string) => void;
}

/** app-logs: the app's WebSocket log stream (`<app url>/logz/stream`), each entry handed to `onEntry`. */
export async function appLogs(
  config: Config,
  options: AppLogsOptions,
): Promise<{ entries: number; reconnects: number }> {
  const ws = await connectWorkspace(config);
  const appUrl = await appPublicUrl(ws, config.appName, config.target);
  const hold = options.tail !== undefined && !options.follow;
  const held: AppLogEntry[] = [];
  const r = await streamLogs({
    appUrl,
    token: () => oauthToken(ws),
    search: options.search,
    follow: options.follow,
    signal: options.signal,
    onEntry: (e) => {
      if (!hold) return options.onEntry(e);
      held.push(e);
      if (held.length > options.tail!) held.shift();
    },
    onReconnect: options.onReconnect,
  });
  for (const e of held) options.onEntry(e);
  return { entries: r.entries, reconnects: r.reconnects };
}
