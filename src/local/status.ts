import type { Config } from "../config/load.js";
import { EXIT } from "../errors.js";
import { processRuns } from "../process/alive.js";
import { NO_SPACE_HINT, noSpaceProblem } from "./disk-space.js";
import { findLeftovers } from "./leftovers.js";
import { cliCommand } from "./printed.js";
import { type CommandOutput, currentRun, publicState } from "./run-info.js";
import { localPaths } from "./state.js";
import { localUserToken } from "./user-token.js";

/** local status: the run state and a health check through the local Apps proxy (exit 5 stopped, 6 unhealthy). */
export async function localStatus(config: Config, out: CommandOutput): Promise<number> {
  const { state, running } = currentRun(config);
  if (!state || !running) {
    // A killed supervisor (kill -9, a closed terminal) leaves its app and PostgreSQL running: say so.
    const left = findLeftovers(localPaths(config.local.stateDir), state);
    if (left.length > 0) {
      const what = left.map((l) => `${l.what} (pid ${l.pid})`).join(", ");
      out.result(
        { status: "stopped", leftovers: left },
        [
          `stopped, but a \`local up\` that ended without stopping left running: ${what}`,
          `→ \`${cliCommand("local down")}\` stops them (\`${cliCommand("local up")}\` stops them too, then starts again; the data is kept)`,
        ].join("\n"),
      );
      return EXIT.notRunning;
    }
    // A full disk stopped it: say so, from run.json when that could still be written, else from the disk.
    const paths = localPaths(config.local.stateDir);
    const noSpace =
      (state?.status === "failed" && state.error?.startsWith("no space left on") ? state.error : undefined) ??
      (state ? noSpaceProblem(paths) : undefined);
    if (noSpace) {
      out.result(
        { status: "stopped", error: noSpace },
        `stopped: ${noSpace}\n→ ${NO_SPACE_HINT.replace("`local up`", `\`${cliCommand("local up")}\``)}`,
      );
      return EXIT.unhealthy;
    }
    if (state?.status === "failed" && state.error) {
      out.result({ status: "stopped", error: state.error }, `stopped: ${state.error}`);
      return EXIT.notRunning;
    }
    out.result({ status: "stopped" }, "stopped (start it with `make local`)");
    return EXIT.notRunning;
  }
  let health: { status: number; ms: number; reason?: string } | { error: string };
  const t0 = performance.now();
  try {
    const { token } = await localUserToken(config.local.stateDir);
    // Longer than the app's own database probe (5 s), so a 503 with its reason arrives instead of a timeout.
    const res = await fetch(`${state.appUrl}/metamcp/health`, {
      headers: { authorization: `Bearer ${token}` },
      redirect: "manual",
      signal: AbortSignal.timeout(15_000),
    });
    const body = await res.text().catch(() => "");
    let reason: string | undefined;
    try {
      reason = (JSON.parse(body) as { reason?: unknown }).reason as string | undefined;
    } catch {
      reason = undefined;
    }
    health = {
      status: res.status,
      ms: Math.round(performance.now() - t0),
      ...(typeof reason === "string" ? { reason } : {}),
    };
  } catch (err) {
    health = { error: (err as Error).message };
  }
  const healthy = "status" in health && health.status === 200;
  const alive = {
    supervisor: processRuns(state.supervisorPid),
    app: processRuns(state.appPid),
    postgres: processRuns(state.pgPid),
  };
  const shown = healthy ? state.status : "unhealthy";
  out.result({ ...publicState(state), status: shown, healthy, alive, health }, () =>
    [
      `status:    ${shown}`,
      `URL:       ${state.appUrl}`,
      `token:     \`${cliCommand("local token")}\` prints a fresh one`,
      `health:    ${"status" in health ? `${health.status} in ${health.ms} ms${health.reason ? `: ${health.reason}` : ""}` : health.error}`,
      `PIDs:      supervisor ${state.supervisorPid} (${alive.supervisor ? "up" : "gone"}), app ${state.appPid} (${alive.app ? "up" : "gone"}), postgres ${state.pgPid} (${alive.postgres ? "up" : "gone"})`,
      `ports:     proxy ${state.ports.proxy}, workspace ${state.ports.workspace}, app ${state.ports.app}, postgres ${state.ports.postgres}`,
      ...(state.instances
        ? [
            `instances: ${state.instances.map((i, n) => `${n + 1}: pid ${i.pid} (${processRuns(i.pid) ? "up" : "gone"}), port ${i.port}`).join("; ")}`,
          ]
        : []),
      ...(healthy ? [] : [`→ the app's log says more: \`${cliCommand("local logs")}\``]),
    ].join("\n"),
  );
  return healthy ? 0 : EXIT.unhealthy;
}
