import { EXIT, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { missingKeyError, resolveApiKey } from "./api-key.js";
import { startBridge } from "./bridge.js";
import { type AuthMode, getEndpointIdentity } from "./identity.js";
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
  /**
   * `identity`: the endpoint accepts the Databricks identity, send no MetaMCP key; `key`: a key is required.
   * Unset: a key when one is found, else the app is asked whether the endpoint accepts the identity.
   */
  auth?: AuthMode;
}

/** `connect --stdio`: resolves the key, the URL and the token source, then relays until stdin closes. */
export async function runStdioBridge(o: StdioOptions): Promise<void> {
  const key =
    o.auth === "identity"
      ? undefined
      : resolveApiKey({ flag: o.apiKey, flagFile: o.apiKeyFile, defaultFile: o.keyFile });
  const url = o.url ?? endpointUrl(await resolveAppUrl(o.target), o.endpoint);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError("bad_url", `--url ${url} is not a URL`, EXIT.input);
  }
  const tokens = await tokenSourceFor(o.target);
  if (!key && o.auth !== "identity") {
    const missing = missingKeyError(o.keyFile, saveKeyCommand(o.bin, o.target, o.endpoint));
    if (o.auth === "key") throw missing;
    // No key anywhere: fine when the endpoint accepts the Databricks identity (ask the app).
    const state = await getEndpointIdentity(parsed.origin, o.endpoint, tokens).catch(() => undefined);
    if (!state?.acceptIdentity) {
      const where = o.target.kind === "local" ? "--local" : `--target ${o.target.target}`;
      throw new UserError(
        missing.code,
        missing.message,
        missing.exitCode,
        `${missing.hint}; or, as the endpoint's owner, let it accept the Databricks identity instead: \`node ${o.bin} connect ${o.endpoint} ${where} --identity on\``,
      );
    }
    o.log.info(
      `${o.endpoint} accepts the Databricks identity (${state.you ?? tokens.description}): no MetaMCP key needed`,
    );
  }
  const bridge = await startBridge({ url: parsed, tokens, apiKey: key?.key, log: o.log });
  const stop = () => void bridge.close();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  await bridge.done;
}
