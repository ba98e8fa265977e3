import { UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { missingKeyError, resolveApiKey } from "./api-key.js";
import { startBridge } from "./bridge.js";
import { saveKeyCommand } from "./plan.js";
import { type ConnectTarget, endpointUrl, resolveAppUrl, tokenSourceFor } from "./target.js";

export interface StdioOptions {
  endpoint: string;
  target: ConnectTarget;
  /** The default key file for this app (used when neither flag nor environment gives the key). */
  keyFile: string;
  apiKey?: string;
  apiKeyFile?: string;
  /** The endpoint URL, when the client config gives it (no lookup at start). */
  url?: string;
  log: Logger;
  /** Our bin, for the hint that says how to save a key. */
  bin: string;
}

/** `connect --stdio`: resolves the key, the URL and the token source, then relays until stdin closes. */
export async function runStdioBridge(o: StdioOptions): Promise<void> {
  const key = resolveApiKey({ flag: o.apiKey, flagFile: o.apiKeyFile, defaultFile: o.keyFile });
  if (!key) throw missingKeyError(o.keyFile, saveKeyCommand(o.bin, o.target, o.endpoint));
  const url = o.url ?? endpointUrl(await resolveAppUrl(o.target), o.endpoint);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError("bad_url", `--url ${url} is not a URL`, 2);
  }
  const tokens = await tokenSourceFor(o.target);
  const bridge = await startBridge({ url: parsed, tokens, apiKey: key.key, log: o.log });
  const stop = () => void bridge.close();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  await bridge.done;
}
