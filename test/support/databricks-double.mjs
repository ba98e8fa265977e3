#!/usr/bin/env node
// Contract double of the Databricks CLI for tests (the real one is not on npm). It records its argv,
// answers with output shaped like the CLI's recorded runs (../shared/databricks/cli-recorded) and,
// for bundle deploy/destroy, makes the REST calls the real CLI would against the test emulator.
// Scenario and state live in $DBX_DOUBLE_DIR (scenario.json, state.json, calls.jsonl).
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";

const dir = process.env.DBX_DOUBLE_DIR;
if (!dir) {
  process.stderr.write("databricks double: DBX_DOUBLE_DIR is not set\n");
  process.exit(99);
}
const argv = process.argv.slice(2);
appendFileSync(
  path.join(dir, "calls.jsonl"),
  `${JSON.stringify({ argv, cwd: process.cwd(), profileEnv: process.env.DATABRICKS_CONFIG_PROFILE ?? null })}\n`,
);
const scenario = JSON.parse(readFileSync(path.join(dir, "scenario.json"), "utf8"));
const statePath = path.join(dir, "state.json");
const state = existsSync(statePath) ? JSON.parse(readFileSync(statePath, "utf8")) : { deployed: {} };
const save = () => writeFileSync(statePath, JSON.stringify(state, null, 2));

function fail(message, code = 1) {
  process.stderr.write(`Error: ${message}\n`);
  process.exit(code);
}
function flag(name) {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}
const positional = argv.filter((a, i) => !a.startsWith("-") && !(i > 0 && argv[i - 1].startsWith("--")));

async function api(method, p, body) {
  const res = await fetch(`${scenario.host}${p}`, {
    method,
    headers: { authorization: `Bearer ${scenario.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

function loadBundle() {
  const file = path.join(process.cwd(), "databricks.yml");
  if (!existsSync(file)) fail("unable to locate bundle root: databricks.yml not found");
  const yml = parse(readFileSync(file, "utf8"));
  const target =
    flag("--target") ?? Object.keys(yml.targets ?? {}).find((t) => yml.targets[t].default) ?? "default";
  if (!yml.targets?.[target])
    fail(`${target}: no such target. Available targets: ${Object.keys(yml.targets ?? {}).join(", ")}`);
  const vars = { ...(yml.targets[target].variables ?? {}) };
  argv.forEach((a, i) => {
    if (a === "--var") {
      const [k, ...v] = argv[i + 1].split("=");
      vars[k] = v.join("=");
    }
  });
  for (const k of Object.keys(vars)) if (!(k in (yml.variables ?? {}))) fail(`variable ${k} is not defined`);
  const user = scenario.userName ?? "someone@example.com";
  const root = `/Workspace/Users/${user}/.bundle/${yml.bundle.name}/${target}`;
  const appKey = Object.keys(yml.resources?.apps ?? {})[0];
  const app = yml.resources.apps[appKey];
  const scopeKey = Object.keys(yml.resources?.secret_scopes ?? {})[0];
  const sub = (s) => String(s).replace(/\$\{var\.([a-z_]+)\}/g, (_, k) => vars[k]);
  return {
    yml,
    target,
    vars,
    root,
    appKey,
    app,
    appName: sub(app.name),
    scopeKey,
    scope: sub(yml.resources.secret_scopes[scopeKey].name),
    sub,
  };
}

const [group, cmd] = positional;
if (group === "version") {
  process.stdout.write(`Databricks CLI v${scenario.version}\n`);
  process.exit(0);
}
if (group === "auth" && cmd === "token") {
  if (scenario.authTokenError || !(scenario.userToken || scenario.userTokens?.length))
    fail(
      "cache: databricks OAuth is not configured for this host. no cached credentials; run `databricks auth login` to sign in",
    );
  // `userTokens`: a new token per call, in order (the last one repeats), as a login's refreshes hand out.
  let token = scenario.userToken;
  if (Array.isArray(scenario.userTokens) && scenario.userTokens.length > 0) {
    const n = state.authTokenCalls ?? 0;
    token = scenario.userTokens[Math.min(n, scenario.userTokens.length - 1)];
    state.authTokenCalls = n + 1;
    save();
  }
  const ttl = (scenario.userTokenTtlSeconds ?? 3600) * 1000;
  process.stdout.write(
    `${JSON.stringify({ access_token: token, token_type: "Bearer", expiry: new Date(Date.now() + ttl).toISOString() }, null, 2)}\n`,
  );
  process.exit(0);
}
if (group !== "bundle") fail(`unknown command "${group}" for "databricks"`);
if (scenario.bundleAuthError)
  fail(
    "default auth: cannot configure default credentials, please check https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication to configure credentials for your preferred authentication method. Config: profile=DEFAULT. Run `databricks auth login`",
  );
const b = loadBundle();
if (cmd === "validate") {
  if (scenario.validateError) fail(scenario.validateError);
  process.stdout.write(
    `Name: ${b.yml.bundle.name}\nTarget: ${b.target}\nWorkspace:\n  User: ${scenario.userName ?? "someone@example.com"}\n  Path: ${b.root}\n\nValidation OK!\n`,
  );
  process.exit(0);
}
if (cmd === "deploy") {
  if (scenario.deployError) fail(scenario.deployError);
  const src = path.join(process.cwd(), b.app.source_code_path);
  if (!existsSync(path.join(src, "app.yaml"))) fail(`app source ${src} has no app.yaml`);
  process.stdout.write(`Uploading bundle files to ${b.root}/files...\n`);
  if (!state.deployed[b.target]) {
    await api("POST", "/api/2.0/secrets/scopes/create", { scope: b.scope, scope_backend_type: "DATABRICKS" });
    await api("POST", "/api/2.0/apps", { name: b.appName });
    if (b.app.lifecycle?.started === true) await api("POST", `/api/2.0/apps/${b.appName}/start`);
  }
  await api("POST", "/api/2.0/workspace/mkdirs", { path: `${b.root}/files` });
  state.deployed[b.target] = { appName: b.appName, scope: b.scope };
  save();
  process.stdout.write("Deploying resources...\nUpdating deployment state...\nDeployment complete!\n");
  process.exit(0);
}
if (cmd === "summary") {
  const deployed = state.deployed[b.target];
  const appOut = {
    name: b.appName,
    source_code_path: `${b.root}/files/${b.app.source_code_path.replace(/^\.\//, "")}`,
    ...(deployed
      ? { id: b.appName, url: `${scenario.host}/apps/${b.appName}` }
      : { modified_status: "created" }),
  };
  process.stdout.write(
    `${JSON.stringify(
      {
        bundle: { name: b.yml.bundle.name, target: b.target },
        workspace: { file_path: `${b.root}/files`, root_path: b.root },
        resources: {
          apps: { [b.appKey]: appOut },
          secret_scopes: {
            [b.scopeKey]: { name: b.scope, ...(deployed ? { id: b.scope } : { modified_status: "created" }) },
          },
        },
      },
      null,
      2,
    )}\n`,
  );
  process.exit(0);
}
if (cmd === "destroy") {
  if (!argv.includes("--auto-approve"))
    fail("please specify --auto-approve since terminal does not support interactive prompts");
  process.stdout.write(
    `The following resources will be deleted:\n  delete resources.apps.${b.appKey}\n  delete resources.secret_scopes.${b.scopeKey}\n\n`,
  );
  await api("DELETE", `/api/2.0/apps/${b.appName}`);
  await api("POST", "/api/2.0/secrets/scopes/delete", { scope: b.scope });
  delete state.deployed[b.target];
  save();
  process.stdout.write(
    `All files and directories at the following location will be deleted: ${b.root}\n\nDestroy complete!\n`,
  );
  process.exit(0);
}
fail(`unknown command "${cmd}" for "databricks bundle"`);
