import { type Command, Option } from "commander";
import { EXIT, UserError } from "../errors.js";
import { parseUserScopes } from "../local/platform/obo-tokens.js";
import { maskSecrets } from "../log/secrets.js";
import { action } from "./common.js";
import { confirm } from "./confirm.js";

interface UpOptions {
  detach?: boolean;
  fresh?: boolean;
  yes?: boolean;
  port?: string;
  credentialTtl?: string;
  tokenTtl?: string;
  requestTimeout?: string;
  streamTimeout?: string;
  forwardAuthorization?: string;
  managedMcp?: string;
  genieDelay?: string;
  userScopes?: string;
  daemon?: boolean;
  lockFrom?: string;
  build?: boolean;
  instances?: string;
  routing?: "sticky" | "spread";
}

/** `--instances`: 1 to 5, as Databricks Apps run (docs/scaling.md). */
function instanceCount(value: string | undefined): number {
  const n = Number(value ?? "1");
  if (!/^[0-9]+$/.test(value ?? "1") || n < 1 || n > 5)
    throw new UserError("invalid_option", "--instances must be a whole number from 1 to 5", EXIT.input);
  return n;
}

/** Longest accepted duration: a day (timers beyond 2^31 ms would fire at once). */
const MAX_SECONDS = 86_400;

/** A duration flag: whole seconds from 1 to a day, or one message naming the flag and that form. */
function seconds(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_SECONDS)
    throw new UserError(
      "invalid_option",
      `${name} ${JSON.stringify(value)}: must be a whole number of seconds from 1 to ${MAX_SECONDS}`,
      EXIT.input,
    );
  return n;
}

/** `--user-scopes`: OAuth scope names, comma-separated. */
function userScopes(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const scopes = parseUserScopes(value);
  if (!scopes)
    throw new UserError(
      "invalid_option",
      `--user-scopes ${JSON.stringify(value)}: must be OAuth scope names separated by commas, e.g. genie,unity-catalog`,
      EXIT.input,
    );
  return scopes;
}

function pid(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new UserError("invalid_option", "--lock-from must be a PID", EXIT.input);
  return n;
}

/** Run from another folder: say where the clone's state is (the command goes on with this folder's). */
async function warnStateElsewhere(
  ctx: { log: { warn(m: string): void } },
  config: { local: { stateDir: string }; cwd: string; values: Record<string, { source: string }> },
  command: string,
): Promise<void> {
  if (config.values.LOCAL_STATE_DIR?.source !== "default") return;
  const { stateElsewhereHint } = await import("../local/printed.js");
  const hint = stateElsewhereHint(config.local.stateDir, config.cwd, command);
  if (hint) ctx.log.warn(hint);
}

export function registerLocal(program: Command): void {
  const local = program
    .command("local")
    .description(
      "Run the whole app on this machine: embedded Lakebase-like PostgreSQL, a Databricks stand-in, one port",
    );

  local
    .command("up", { isDefault: true })
    .description("Prepare and build if needed, then start everything and wait until healthy")
    .option("--detach", "return once healthy and leave it running until `local down`")
    .option("--fresh", "start with an empty database (asks first unless --yes)")
    .option("--no-build", "use the app tree in APP_DIR as it is (no prepare, no build)")
    .option("-y, --yes", "do not ask for confirmation")
    .option("--port <n>", "port of the local Apps proxy, 1-65535 (env LOCAL_PORT, default 8000)")
    .option("--credential-ttl <seconds>", "lifetime of each database credential (Lakebase: 3600)", "3600")
    .option(
      "--token-ttl <seconds>",
      "lifetime of OAuth tokens, users' and the app's service principal's (Databricks: 3600)",
      "3600",
    )
    .option("--request-timeout <seconds>", "the Apps proxy's cut of a request (Databricks: 120)", "120")
    .option(
      "--stream-timeout <seconds>",
      "the Apps proxy's cut of an event stream (Databricks: about 300)",
      "300",
    )
    .addOption(
      new Option(
        "--forward-authorization <on|off>",
        "whether the client's Authorization header reaches the app (undocumented on Databricks: rehearse both)",
      )
        .choices(["on", "off"])
        .default("on"),
    )
    .addOption(
      new Option(
        "--managed-mcp <on|off>",
        "whether the stand-in workspace offers Databricks' managed MCP servers under /api/2.0/mcp/ (off: a workspace whose preview is off)",
      )
        .choices(["on", "off"])
        .default("on"),
    )
    .option("--genie-delay <seconds>", "how long the stand-in's Genie answers stay IN_PROGRESS", "3")
    .option(
      "--user-scopes <list>",
      "the app's user authorization scopes (user_api_scopes), e.g. genie,unity-catalog: the proxy then forwards each person's token in X-Forwarded-Access-Token",
    )
    .option(
      "--instances <n>",
      "run n instances of the app (1-5) on the one database, behind the proxy (docs/scaling.md)",
      "1",
    )
    .addOption(
      new Option(
        "--routing <how>",
        "with several instances: sticky (per person, as the platform's affinity) or spread (request by request)",
      )
        .choices(["sticky", "spread"])
        .default("sticky"),
    )
    .addOption(new Option("--daemon", "internal: run as the detached supervisor").hideHelp())
    .addOption(new Option("--lock-from <pid>", "internal: take the lock over from this PID").hideHelp())
    .action(
      action(async (ctx, opts: UpOptions) => {
        const config = ctx.config({ port: opts.port });
        // The detached supervisor's stdout and stderr are local.log: a full disk makes every write fail,
        // which must not kill it (unhandled 'error') before it has stopped the rest and said why.
        if (opts.daemon) for (const out of [process.stdout, process.stderr]) out.on("error", () => {});
        const { localUp } = await import("../local/up.js");
        return await localUp(
          {
            config,
            detach: opts.detach ?? false,
            daemon: opts.daemon ?? false,
            lockFrom: pid(opts.lockFrom),
            build: opts.build ?? true,
            fresh: opts.fresh ?? false,
            yes: opts.yes ?? false,
            credentialTtlSeconds: seconds(opts.credentialTtl, "--credential-ttl", 3600),
            tokenTtlSeconds: seconds(opts.tokenTtl, "--token-ttl", 3600),
            proxy: {
              requestTimeoutMs: seconds(opts.requestTimeout, "--request-timeout", 120) * 1000,
              streamTimeoutMs: seconds(opts.streamTimeout, "--stream-timeout", 300) * 1000,
              forwardAuthorization: opts.forwardAuthorization !== "off",
            },
            userApiScopes: userScopes(opts.userScopes),
            managedMcp: {
              offered: opts.managedMcp !== "off",
              genieDelayMs: seconds(opts.genieDelay, "--genie-delay", 3) * 1000,
            },
            instances: instanceCount(opts.instances),
            routing: opts.routing ?? "sticky",
            json: ctx.globals.json ?? false,
            confirm,
          },
          ctx,
        );
      }),
    );

  local
    .command("down")
    .description("Stop everything `local up` started (and nothing else)")
    .action(
      action(async (ctx) => {
        const { localDown } = await import("../local/down.js");
        const config = ctx.config();
        await warnStateElsewhere(ctx, config, "local down");
        return await localDown(config, ctx);
      }),
    );

  local
    .command("restart")
    .description("Replace the running app's instances one at a time, as a rolling deploy does (--rolling)")
    .requiredOption("--rolling", "one instance at a time, each out of the proxy's rotation while replaced")
    .action(
      action(async (ctx) => {
        const { localRestartRolling } = await import("../local/restart.js");
        const config = ctx.config();
        await warnStateElsewhere(ctx, config, "local restart");
        return await localRestartRolling(config, ctx);
      }),
    );

  local
    .command("status")
    .description("State, URL, health, PIDs and ports")
    .action(
      action(async (ctx) => {
        const { localStatus } = await import("../local/status.js");
        const config = ctx.config();
        await warnStateElsewhere(ctx, config, "local status");
        return await localStatus(config, ctx);
      }),
    );

  local
    .command("token")
    .description("Print a fresh user OAuth token for the local Apps proxy (alone, for TOKEN=$(...))")
    .option(
      "--user <email>",
      "a token for this local user (one who signed in at the local login page); default: the local default user",
    )
    .action(
      action(async (ctx, opts: { user?: string }) => {
        const { localToken } = await import("../local/token.js");
        const { localUserEmail } = await import("../local/user-token.js");
        const config = ctx.config();
        await warnStateElsewhere(ctx, config, "local token");
        const user = opts.user === undefined ? undefined : localUserEmail(opts.user);
        return await localToken(config, (text) => process.stdout.write(text), user);
      }),
    );

  local
    .command("logs")
    .description("Print the local app's logs")
    .option("-f, --follow", "keep printing new lines until Ctrl-C")
    .addOption(
      new Option("--level <level>", "only lines at this level or above").choices([
        "debug",
        "info",
        "warn",
        "error",
      ]),
    )
    .action(
      action(async (ctx, opts: { follow?: boolean; level?: "debug" | "info" | "warn" | "error" }) => {
        const { localLogs } = await import("../local/logs.js");
        const config = ctx.config();
        await warnStateElsewhere(ctx, config, "local logs");
        return await localLogs(
          config,
          (text) => process.stdout.write(maskSecrets(text)),
          opts.follow ?? false,
          opts.level,
        );
      }),
    );
}
