import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { type CliResult, runCli } from "./cli.js";
import { DatabricksCliDouble, type DoubleScenario } from "./databricks-cli-double.js";
import { type AppRunner, DatabricksEmulator } from "./databricks-emulator.js";
import { localhostCertificate } from "./tls.js";

/**
 * Everything a Databricks-side command test needs, all real and on 127.0.0.1: the workspace emulator,
 * an app behind its Apps proxy (a real HTTP server), the CLI double on PATH, a HOME with
 * ~/.databrickscfg profiles (M2M `DEFAULT`, browser-login `u2m`, PAT `pat`), and a project folder
 * with an app tree.
 */
export interface DatabricksWorld {
  emulator: DatabricksEmulator;
  double: DatabricksCliDouble;
  project: string;
  home: string;
  /** What the app answers on /metamcp/health. */
  health: { status: number };
  /** Runs the real CLI binary in the project with the world's environment. */
  run(args: string[], env?: Record<string, string>): Promise<CliResult>;
  env(extra?: Record<string, string>): Record<string, string>;
  close(): Promise<void>;
}

export const M2M = { id: "m2m-client", secret: "m2m-secret-value-1234567890" };
export const PAT = "dapi0123456789abcdef0123456789abcdef";
/** A second developer of the same workspace: profile `bob`, an OAuth M2M login of their own. */
export const BOB = {
  profile: "bob",
  id: "m2m-client-bob",
  secret: "bob-secret-value-0987654321",
  userName: "Bob.O'Brien-Smith@example.com",
};

export interface WorldOptions {
  /** Runs deployed app trees for real on this port against this PostgreSQL (the first-deploy rehearsal). */
  runner?: AppRunner;
  /** Writes the project's app tree (default: a two-file stand-in). */
  appTree?: (dir: string) => void;
  /** Where the Apps proxy forwards instead of the world's stand-in app (a real router under test). */
  appTarget?: string;
}

export async function startDatabricksWorld(
  root: string,
  scenario: Partial<DoubleScenario> = {},
  options: WorldOptions = {},
): Promise<DatabricksWorld> {
  const health = { status: 200 };
  const app: Server = createServer((req, res) => {
    if (req.url?.startsWith("/metamcp/health")) {
      res.writeHead(health.status, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: health.status === 200 ? "ok" : "starting" }));
      return;
    }
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("app");
  });
  await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
  const appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  // The app host speaks HTTPS with a certificate only the CLI under test trusts (NODE_EXTRA_CA_CERTS).
  const tls = await localhostCertificate();
  const caFile = path.join(root, "app-ca.pem");
  mkdirSync(root, { recursive: true });
  writeFileSync(caFile, tls.cert);
  const target = options.runner
    ? `http://127.0.0.1:${options.runner.appPort}`
    : (options.appTarget ?? appUrl);
  const emulator = await new DatabricksEmulator(target, tls, options.runner).start();
  emulator.clients.set(M2M.id, M2M.secret);
  emulator.clients.set(BOB.id, BOB.secret);
  emulator.users.set(BOB.id, { userName: BOB.userName });
  emulator.pats.add(PAT);

  const home = path.join(root, "home");
  mkdirSync(home, { recursive: true });
  writeFileSync(
    path.join(home, ".databrickscfg"),
    [
      "[DEFAULT]",
      `host = ${emulator.url}`,
      `client_id = ${M2M.id}`,
      `client_secret = ${M2M.secret}`,
      "",
      `[${BOB.profile}]`,
      `host = ${emulator.url}`,
      `client_id = ${BOB.id}`,
      `client_secret = ${BOB.secret}`,
      "",
      "[u2m]",
      `host = ${emulator.url}`,
      "auth_type = databricks-cli",
      "",
      "[pat]",
      `host = ${emulator.url}`,
      `token = ${PAT}`,
      "",
    ].join("\n"),
  );
  const project = path.join(root, "project");
  mkdirSync(path.join(project, "build/app/runtime"), { recursive: true });
  if (options.appTree) options.appTree(path.join(project, "build/app"));
  else {
    writeFileSync(path.join(project, "build/app/runtime/start.mjs"), "// the app's runtime\n");
    writeFileSync(path.join(project, "build/app/package.json"), '{"name":"app","private":true}\n');
  }

  const double = new DatabricksCliDouble(path.join(root, "double"), {
    version: "1.13.0",
    host: emulator.url,
    fsRoot: emulator.fsRoot,
    adminToken: emulator.issueUserToken(24 * 3600),
    userToken: emulator.issueUserToken(),
    profileUsers: { [BOB.profile]: BOB.userName },
    ...scenario,
  });

  const env = (extra: Record<string, string> = {}) => ({
    HOME: home,
    NODE_EXTRA_CA_CERTS: caFile,
    ...double.env(),
    ...extra,
  });
  return {
    emulator,
    double,
    project,
    home,
    health,
    env,
    run: (args, extra) => runCli(args, { cwd: project, env: env(extra), timeoutMs: 120_000 }),
    async close() {
      await emulator.close();
      await new Promise<void>((r) => app.close(() => r()));
    },
  };
}
