import { type Command, Option } from "commander";
import { UserError } from "../errors.js";
import { localDown, localLogs, localStatus, localToken, localUp } from "../local/commands.js";
import { maskSecrets } from "../log/secrets.js";
import { action } from "./common.js";

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
  daemon?: boolean;
  build?: boolean;
}

function positiveInt(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0)
    throw new UserError("invalid_option", `${name} must be a positive whole number`);
  return n;
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
    .option("--port <n>", "port of the local Apps proxy (env LOCAL_PORT, default 8000)")
    .option("--credential-ttl <seconds>", "lifetime of each database credential (Lakebase: 3600)", "3600")
    .option("--token-ttl <seconds>", "lifetime of user OAuth tokens (Databricks: 3600)", "3600")
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
    .addOption(new Option("--daemon", "internal: run as the detached supervisor").hideHelp())
    .action(
      action(async (ctx, opts: UpOptions) => {
        const config = ctx.config({ port: opts.port });
        return await localUp(
          {
            config,
            detach: opts.detach ?? false,
            daemon: opts.daemon ?? false,
            build: opts.build ?? true,
            fresh: opts.fresh ?? false,
            yes: opts.yes ?? false,
            credentialTtlSeconds: positiveInt(opts.credentialTtl, "--credential-ttl", 3600),
            tokenTtlSeconds: positiveInt(opts.tokenTtl, "--token-ttl", 3600),
            proxy: {
              requestTimeoutMs: positiveInt(opts.requestTimeout, "--request-timeout", 120) * 1000,
              streamTimeoutMs: positiveInt(opts.streamTimeout, "--stream-timeout", 300) * 1000,
              forwardAuthorization: opts.forwardAuthorization !== "off",
            },
            json: ctx.globals.json ?? false,
          },
          ctx,
        );
      }),
    );

  local
    .command("down")
    .description("Stop everything `local up` started (and nothing else)")
    .action(action(async (ctx) => await localDown(ctx.config(), ctx)));

  local
    .command("status")
    .description("State, URL, health, PIDs and ports")
    .action(action(async (ctx) => await localStatus(ctx.config(), ctx)));

  local
    .command("token")
    .description("Print a fresh user OAuth token for the local Apps proxy (alone, for TOKEN=$(...))")
    .action(action(async (ctx) => await localToken(ctx.config(), (text) => process.stdout.write(text))));

  local
    .command("logs")
    .description("Print the local app's logs")
    .option("-f, --follow", "keep printing new lines until Ctrl-C")
    .action(
      action(
        async (ctx, opts: { follow?: boolean }) =>
          await localLogs(
            ctx.config(),
            (text) => process.stdout.write(maskSecrets(text)),
            opts.follow ?? false,
          ),
      ),
    );
}
