import type { Command } from "commander";
import type { AppStatus, DeploymentInfo } from "../databricks/apps.js";
import { action } from "./common.js";

function deployment(label: string, d: DeploymentInfo | undefined): string {
  if (!d) return `  ${label.padEnd(10)} none`;
  return `  ${label.padEnd(10)} ${d.id} ${d.state ?? "?"}${d.message ? ` (${d.message})` : ""}${d.createTime ? ` since ${d.createTime}` : ""}`;
}

export function formatStatus(s: AppStatus): string {
  return [
    `app ${s.name}`,
    `  state      ${s.appState ?? "?"}${s.appMessage ? ` (${s.appMessage})` : ""}`,
    `  compute    ${s.computeState ?? "?"}${s.computeMessage ? ` (${s.computeMessage})` : ""}`,
    `  url        ${s.url ?? "(none yet)"}`,
    deployment("active", s.activeDeployment),
    deployment("pending", s.pendingDeployment),
  ].join("\n");
}

export function registerAppStatus(program: Command): void {
  program
    .command("app-status")
    .description(
      "The app's state, compute state, URL, and active and pending deployments (`databricks apps get`)",
    )
    .action(
      action(async (ctx) => {
        const { withDevNames } = await import("../databricks/dev-user.js");
        const { config } = await withDevNames(ctx.config, ctx.log);
        const { appStatus } = await import("../databricks/app-status.js");
        const status = await appStatus(config, ctx.log);
        ctx.result(status, () => formatStatus(status));
      }),
    );
}
