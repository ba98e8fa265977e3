import { devUserSegment } from "../config/dev-names.js";
import type { Config } from "../config/load.js";
import type { Target } from "../config/variables.js";
import { isUserError, UserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import type { ConfigFor } from "./deployments.js";
import { apiFailure, connectWorkspace, type Workspace } from "./workspace.js";

/** Loads the config with extra flags on top (the command's own loader: flags > environment > .env). */
export type LoadConfig = (flags?: Record<string, string | undefined>) => Config;

export interface DeployerConfigs {
  config: Config;
  configFor: ConfigFor;
  /** The dev segment and where it came from: the config, or the workspace's SCIM Me. */
  devUser: { segment: string; from: "config" | "workspace"; userName?: string };
  /** The workspace, when it was connected to look the user up (callers may reuse it). */
  workspace?: Workspace;
}

/**
 * The config with every dev name made the deploying user's. We resolve the user ourselves (SCIM Me, what
 * the CLI's `current-user me` reads) rather than render `${workspace.current_user.short_name}`: short_name
 * keeps `_` (jane.doe → jane_doe), which no app name accepts, nothing bounds its length to the app
 * name's 30 characters, and our own calls (the secret scope made before the bundle, the app's URL, logs,
 * health) need the same name the bundle deploys. DEV_USER set in the config wins: no lookup.
 */
export async function withDevNames(load: LoadConfig, log: Logger): Promise<DeployerConfigs> {
  const first = load();
  const given = first.values.DEV_USER;
  if (given?.value) {
    return {
      config: first,
      configFor: (target: Target) => load({ target }),
      devUser: { segment: given.value, from: "config" },
    };
  }
  let ws: Workspace;
  let me: { userName?: string; displayName?: string };
  try {
    ws = await connectWorkspace(first);
    me = await ws.client.currentUser.me();
  } catch (err) {
    const e = isUserError(err) ? err : apiFailure("reading the current user (SCIM Me)", err);
    throw new UserError(
      e.code,
      `${e.message}\n(dev names carry the deploying user, looked up in the workspace)`,
      e.exitCode,
      `${e.hint ? `${e.hint}; or ` : ""}set DEV_USER=<your-name> to name dev resources without a lookup`,
      { cause: err },
    );
  }
  const segment = devUserSegment(me);
  log.debug(`dev names for ${me.userName ?? "?"}: ${segment}`);
  const flags = { "dev-user": segment };
  return {
    config: load(flags),
    configFor: (target: Target) => load({ ...flags, target }),
    devUser: { segment, from: "workspace", userName: me.userName },
    workspace: ws,
  };
}
