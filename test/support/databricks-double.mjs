#!/usr/bin/env node
// Contract double of the Databricks CLI for tests (the real one is not on npm). Only the commands this
// project runs, each built from the CLI's source and recorded runs (v1.13.0 line; cited per command in
// test/databricks/fixtures/platform-cases.md, "The CLI commands we run"): `version`, `auth token`,
// `bundle validate|deploy|summary|sync|run|destroy`, `apps get|get-deployment|logs`, `secrets put-secret`.
// Flags and arguments are parsed as cobra/pflag parse them: an unknown flag, a missing or extra argument,
// an unknown command fails with the CLI's message and exit 1, as the real CLI does. For `bundle deploy`
// it makes the REST calls the real CLI makes against the test's workspace emulator, with the real CLI's
// rules (bundle/direct/dresources/app.go, bundle/phases):
// - the engine: bundle.engine > DATABRICKS_BUNDLE_ENGINE > the existing state's engine > direct (CLI
//   >= 1.3.0; terraform before); an existing terraform state is deployed with terraform whatever is asked;
//   on terraform, lifecycle.started fails `bundle deploy` (not `validate`);
// - bundle.databricks_cli_version is enforced;
// - apps (direct): created with no_compute unless lifecycle.started is true; when started, the CLI starts
//   the app if needed and makes a SNAPSHOT deployment of source_code_path and waits for it, on create
//   and whenever the app changes or was stopped; a deploy that changes nothing deploys no code;
// - Lakebase: projects, roles, databases created through the Postgres API (the API enforces the ids);
//   destroy purges a project only with purge_on_delete.
// Scenario and state live in $DBX_DOUBLE_DIR (scenario.json, state.json, calls.jsonl).
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import WebSocket from "ws";
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
const state = existsSync(statePath) ? JSON.parse(readFileSync(statePath, "utf8")) : { targets: {} };
const save = () => writeFileSync(statePath, JSON.stringify(state, null, 2));

/** cmd/root/root.go Execute: every error is `Error: <message>` on stderr, exit 1. */
function fail(message, code = 1) {
  process.stderr.write(`Error: ${message}\n`);
  process.exit(code);
}

// --- the command line, as cobra + pflag read it -------------------------------------------------------
// Flag kinds: "bool" (no value), "string" (a value: `--f v` or `--f=v`), "list" (repeatable string).
// The root's persistent flags (cmd/root/{auth,bundle,io,logger,progress_logger}.go), the bundle group's
// `--var` (cmd/bundle/variables.go), then each command's own (its cmd/**.go file, cited in the table).
const ROOT_FLAGS = {
  debug: "bool",
  output: "string",
  profile: "string",
  target: "string",
  "log-level": "string",
  "log-file": "string",
  "log-format": "string",
  "progress-format": "string",
  help: "bool",
};
const SHORT = { o: "output", p: "profile", t: "target", h: "help", f: "follow", q: "quiet", c: "cluster-id" };
const RUN_OPTIONS = Object.fromEntries(
  // bundle/run/options.go: the job, task and pipeline groups (not used for apps, accepted all the same).
  [
    "params",
    "python-params",
    "python-named-params",
    "notebook-params",
    "jar-params",
    "spark-submit-params",
    "sql-params",
    "pipeline-params",
    "refresh",
    "full-refresh",
  ]
    .map((f) => [f, "string"])
    .concat(["refresh-all", "full-refresh-all", "validate-only"].map((f) => [f, "bool"])),
);
/** use: the usage line; args: [min, max] positional arguments (cobra's Args check); flags: its own. */
const COMMANDS = {
  version: { use: "version", args: [0, 0], flags: {} },
  "auth token": {
    use: "auth token [HOST_OR_PROFILE]",
    args: [0, 1],
    flags: { host: "string", "account-id": "string", timeout: "string", "force-refresh": "bool" },
  },
  // cmd/bundle/validate.go
  "bundle validate": {
    use: "bundle validate",
    args: [0, 0],
    bundle: true,
    flags: { "include-locations": "bool", strict: "bool" },
  },
  // cmd/bundle/deploy.go
  "bundle deploy": {
    use: "bundle deploy",
    args: [0, 0],
    bundle: true,
    flags: {
      force: "bool",
      "force-lock": "bool",
      "fail-on-active-runs": "bool",
      "compute-id": "string",
      "cluster-id": "string",
      "auto-approve": "bool",
      verbose: "bool",
      quiet: "count",
      plan: "string",
      select: "list",
    },
  },
  // cmd/bundle/summary.go
  "bundle summary": {
    use: "bundle summary",
    args: [0, 0],
    bundle: true,
    flags: { "force-pull": "bool", "include-locations": "bool" },
  },
  // cmd/bundle/sync.go (root.NoArgs)
  "bundle sync": {
    use: "bundle sync",
    args: [0, 0],
    bundle: true,
    flags: { interval: "string", full: "bool", watch: "bool", "dry-run": "bool" },
  },
  // cmd/bundle/run.go: [KEY] and the runner's own arguments (an app takes none: bundle/run/app.go ParseArgs)
  "bundle run": {
    use: "bundle run [flags] [KEY]",
    args: [0, Infinity],
    bundle: true,
    flags: { "no-wait": "bool", restart: "bool", ...RUN_OPTIONS },
  },
  // cmd/bundle/destroy.go (root.NoArgs)
  "bundle destroy": {
    use: "bundle destroy",
    args: [0, 0],
    bundle: true,
    flags: { "auto-approve": "bool", "force-lock": "bool", quiet: "count" },
  },
  // cmd/workspace/apps/apps.go: get NAME, get-deployment APP_NAME DEPLOYMENT_ID (ExactArgs)
  "apps get": { use: "apps get NAME", args: [1, 1], flags: {} },
  "apps get-deployment": { use: "apps get-deployment APP_NAME DEPLOYMENT_ID", args: [2, 2], flags: {} },
  // cmd/apps/logs.go (makeArgsOptionalWithBundle: at most one NAME)
  "apps logs": {
    use: "apps logs [NAME]",
    args: [0, 1],
    flags: {
      "tail-lines": "string",
      follow: "bool",
      timeout: "string",
      search: "string",
      source: "list",
      "output-file": "string",
    },
  },
  // cmd/workspace/secrets/put_secret.go (ExactArgs(2), none with --json)
  "secrets put-secret": {
    use: "secrets put-secret SCOPE KEY",
    args: [2, 2],
    flags: { json: "string", "bytes-value": "string", "string-value": "string" },
  },
};
const GROUPS = { auth: ["token"], bundle: [], apps: [], secrets: [] };
for (const k of Object.keys(COMMANDS)) {
  const [g, c] = k.split(" ");
  if (c && GROUPS[g] && !GROUPS[g].includes(c)) GROUPS[g].push(c);
}

function usage(spec) {
  return `\n\nUsage:\n  databricks ${spec.use}${spec.use.includes("[flags]") ? "" : " [flags]"}\n`;
}

/** The command, its flags and its positional arguments; refuses what cobra refuses. */
function parseCommandLine(args) {
  const words = [];
  const rest = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      rest.push(...args.slice(i));
      break;
    }
    if (a.startsWith("-")) {
      rest.push(a);
      // A value that follows a flag is no command word (every known value flag takes one).
      const name = a.startsWith("--") ? a.slice(2) : SHORT[a.slice(1)];
      if (!a.includes("=") && name && kindOf(name) !== "bool" && kindOf(name) !== "count") {
        if (i + 1 < args.length) rest.push(args[++i]);
      }
      continue;
    }
    if (words.length < 2 && (words.length === 0 || GROUPS[words[0]])) words.push(a);
    else rest.push(a);
  }
  const [group, sub] = words;
  if (!group) fail('unknown command "" for "databricks"');
  let key = group;
  if (GROUPS[group]) {
    if (!sub || !GROUPS[group].includes(sub))
      fail(`unknown command "${sub ?? ""}" for "databricks ${group}"`);
    key = `${group} ${sub}`;
  } else if (!COMMANDS[group]) fail(`unknown command "${group}" for "databricks"`);
  const spec = COMMANDS[key];
  const flags = {};
  const positional = [];
  const known = { ...ROOT_FLAGS, ...(spec.bundle ? { var: "list" } : {}), ...spec.flags };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === "--") {
      positional.push(...rest.slice(i + 1));
      break;
    }
    if (!a.startsWith("-")) {
      positional.push(a);
      continue;
    }
    const long = a.startsWith("--");
    const [raw, inline] = a.replace(/^--?/, "").split(/=(.*)/s);
    const name = long ? raw : SHORT[raw];
    if (!name || !(name in known))
      fail(
        `unknown ${long ? "flag" : "shorthand flag"}: ${long ? `--${raw}` : `'${raw}' in ${a}`}${usage(spec)}`,
      );
    const kind = known[name];
    if (kind === "bool") flags[name] = inline === undefined ? true : inline === "true";
    else if (kind === "count") flags[name] = (flags[name] ?? 0) + 1;
    else {
      const value = inline ?? rest[++i];
      if (value === undefined) fail(`flag needs an argument: --${name}${usage(spec)}`);
      if (kind === "list") flags[name] = [...(flags[name] ?? []), ...value.split(",")];
      else flags[name] = value;
    }
  }
  const [min, max] = spec.args;
  if (!(key === "secrets put-secret" && flags.json !== undefined)) {
    if (positional.length < min || positional.length > max) {
      if (min === 0 && max === 0)
        fail(`unknown command "${positional[0]}" for "databricks ${key}"${usage(spec)}`);
      if (min === max) fail(`accepts ${min} arg(s), received ${positional.length}${usage(spec)}`);
      fail(`accepts at most ${max} arg(s), received ${positional.length}${usage(spec)}`);
    }
  }
  return { key, flags, positional };
}

function kindOf(name) {
  for (const spec of Object.values(COMMANDS)) if (spec.flags[name]) return spec.flags[name];
  return ROOT_FLAGS[name] ?? (name === "var" ? "list" : undefined);
}

const cmdLine = parseCommandLine(argv);
const flag = (name) => cmdLine.flags[name];

/** Who the profile signs in as: `profileUsers[profile]`, else `userName` (one person per profile). */
function currentUser() {
  const profile = flag("profile") ?? process.env.DATABRICKS_CONFIG_PROFILE ?? "DEFAULT";
  return scenario.profileUsers?.[profile] ?? scenario.userName ?? "someone@example.com";
}

/** libs/iamutil/user.go GetShortUserName: the local part, lower-cased, non-alphanumerics as one `_`. */
function shortName(user) {
  return user
    .split("@")[0]
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]+/gu, "_")
    .replace(/^_+|_+$/g, "");
}

function semverLt(a, b) {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) < (pb[i] ?? 0);
  return false;
}

async function api(method, p, body) {
  const res = await fetch(`${scenario.host}${p}`, {
    method,
    headers: { authorization: `Bearer ${scenario.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

/** An API failure as the CLI prints it for a resource. */
function apiFail(verb, key, r, method, p) {
  fail(
    `cannot ${verb} resources.${key}: ${r.body.message} (${r.status} ${r.body.error_code})\n\nEndpoint: ${method} ${scenario.host}${p}\nHTTP Status: ${r.status}\nAPI error_code: ${r.body.error_code}\nAPI message: ${r.body.message}`,
  );
}

function deepMerge(a, b) {
  if (b === undefined) return a;
  if (typeof a !== "object" || a === null || Array.isArray(a) || typeof b !== "object" || Array.isArray(b))
    return b;
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = deepMerge(a[k], v);
  return out;
}

function loadBundle() {
  const file = path.join(process.cwd(), "databricks.yml");
  if (!existsSync(file)) fail("unable to locate bundle root: databricks.yml not found");
  const text = readFileSync(file, "utf8");
  const yml = parse(text);
  const target =
    flag("target") ?? Object.keys(yml.targets ?? {}).find((t) => yml.targets[t].default) ?? "default";
  if (yml.targets && !yml.targets[target])
    fail(`${target}: no such target. Available targets: ${Object.keys(yml.targets ?? {}).join(", ")}`);
  const constraint = yml.bundle?.databricks_cli_version;
  const min = /^>=\s*(\d+\.\d+\.\d+)$/.exec(constraint ?? "")?.[1];
  if (min && semverLt(scenario.version, min))
    fail(
      `Databricks CLI version constraint not satisfied. Required: ${constraint}, current: ${scenario.version}`,
    );
  const vars = { ...(yml.targets?.[target]?.variables ?? {}) };
  for (const a of flag("var") ?? []) {
    const [k, ...v] = a.split("=");
    vars[k] = v.join("=");
  }
  for (const k of Object.keys(vars)) if (!(k in (yml.variables ?? {}))) fail(`variable ${k} is not defined`);
  for (const k of Object.keys(yml.variables ?? {}))
    if (!(k in vars) && yml.variables[k].default === undefined)
      fail(
        `no value assigned to required variable ${k}. Variables are usually assigned in databricks.yml, and they can be overridden using "--var", the BUNDLE_VAR_${k} environment variable, or .databricks/bundle/<target>/variable-overrides.json`,
      );
  const user = currentUser();
  const resources = deepMerge(yml.resources ?? {}, yml.targets?.[target]?.resources);
  const root =
    yml.targets?.[target]?.workspace?.root_path ??
    `/Workspace/Users/${user}/.bundle/${yml.bundle.name}/${target}`;
  const ctx = {
    var: vars,
    bundle: { name: yml.bundle.name, target },
    workspace: { current_user: { userName: user, short_name: shortName(user) } },
  };
  // Every `${...}`: variables and bundle fields now; resource references as the resources are created.
  const resolve = (value, resourcesState) =>
    String(value).replace(/\$\{([^}]+)\}/g, (whole, expr) => {
      const parts = expr.split(".");
      if (parts[0] === "resources") {
        const [, type, key, field] = parts;
        const got = resourcesState?.[type]?.[key]?.[field];
        return got === undefined ? whole : got;
      }
      let v = ctx;
      for (const p of parts) v = v?.[p];
      return v === undefined ? whole : String(v);
    });
  const resolvedRoot = resolve(root);
  const engineLine = text.split("\n").findIndex((l) => /^\s+started:\s*true/.test(l));
  return { yml, text, target, vars, root: resolvedRoot, resources, resolve, startedLine: engineLine + 1 };
}

const [group, cmd] = cmdLine.key.split(" ");
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
/** Progress lines go to stderr (libs/cmdio/log.go LogString); `✓ ` before each (bundle/run/app.go). */
const progress = (msg) => msg && process.stderr.write(`✓ ${msg}\n`);
/** How often the SDK's waiters poll (the Go SDK starts at 1 s; faster here so tests stay quick). */
const POLL_MS = scenario.pollMs ?? 250;

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

/**
 * The profile must be in the config file (the Go SDK's config loader: `resolve: <file> has no P profile
 * configured`; cmd/root/bundle_test.go). Checked for the commands that reach the workspace.
 */
function requireProfile() {
  const file = process.env.DATABRICKS_CONFIG_FILE ?? path.join(process.env.HOME ?? "", ".databrickscfg");
  const profile = flag("profile") ?? process.env.DATABRICKS_CONFIG_PROFILE ?? "DEFAULT";
  const text = existsSync(file) ? readFileSync(file, "utf8") : "";
  if (!text.split(/\r?\n/).some((l) => l.trim() === `[${profile}]`))
    fail(`resolve: ${file} has no ${profile} profile configured. Config: profile=${profile}`);
}
if (group === "apps" || group === "secrets") requireProfile();

/** A REST call the CLI makes; an unreachable workspace fails as Go's HTTP client says it. */
async function call(method, p, body) {
  try {
    return await api(method, p, body);
  } catch (err) {
    const cause = err.cause ?? err;
    const addr = cause.address ? `${cause.address}:${cause.port}` : new URL(scenario.host).host;
    fail(
      `${method[0]}${method.slice(1).toLowerCase()} "${scenario.host}${p}": dial tcp ${addr}: connect: connection refused`,
    );
  }
}

/** `-o json` and the default output of these commands: the API's JSON, indented (libs/cmdio render). */
const printJson = (v) => process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);

if (group === "apps" && (cmd === "get" || cmd === "get-deployment")) {
  const [name, id] = cmdLine.positional;
  const r = await call(
    "GET",
    cmd === "get" ? `/api/2.0/apps/${name}` : `/api/2.0/apps/${name}/deployments/${id}`,
  );
  if (r.status !== 200) fail(r.body.message);
  printJson(r.body);
  process.exit(0);
}

if (group === "secrets" && cmd === "put-secret") {
  // put_secret.go: --string-value as is, --bytes-value base64'd, else the value from stdin (no prompt
  // without a terminal), sent as bytes_value.
  if (flag("bytes-value") !== undefined && flag("string-value") !== undefined)
    fail("cannot specify both --bytes-value and --string-value");
  const [scope, key] = cmdLine.positional;
  const body = { scope, key };
  if (flag("string-value") !== undefined) body.string_value = flag("string-value");
  else if (flag("bytes-value") !== undefined)
    body.bytes_value = Buffer.from(flag("bytes-value")).toString("base64");
  else {
    if (process.stdin.isTTY) fail("the double does not prompt: pipe the value on stdin");
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    body.bytes_value = Buffer.concat(chunks).toString("base64");
  }
  const r = await call("POST", "/api/2.0/secrets/put", body);
  if (r.status !== 200) fail(r.body.message);
  process.exit(0);
}

if (group === "apps" && cmd === "logs") await appsLogs();

if (group !== "bundle") fail(`unknown command "${group}" for "databricks"`);
if (scenario.bundleAuthError)
  fail(
    "default auth: cannot configure default credentials, please check https://docs.databricks.com/en/dev-tools/auth.html#databricks-client-unified-authentication to configure credentials for your preferred authentication method. Config: profile=DEFAULT. Run `databricks auth login`",
  );
const b = loadBundle();
// The deployment state lives in the workspace under root_path/state: one per target AND per user (dev's
// root is the user's own folder), so two developers' deploys never see each other's state.
const stateKey = b.root;
const targetState = () => {
  state.targets[stateKey] ??= { resources: {} };
  return state.targets[stateKey];
};

/** bundle.engine > DATABRICKS_BUNDLE_ENGINE > the state's engine > the default for new bundles. */
function engines() {
  const stateEngine = scenario.terraformState?.[b.target] ? "terraform" : state.targets[stateKey]?.engine;
  const requested =
    b.yml.bundle?.engine ||
    process.env.DATABRICKS_BUNDLE_ENGINE ||
    stateEngine ||
    (semverLt(scenario.version, "1.3.0") ? "terraform" : "direct");
  // An existing state keeps its engine for this deploy (the CLI migrates only after a clean deploy).
  return { requested, effective: stateEngine ?? requested };
}

function checkLifecycleEngine() {
  const { effective } = engines();
  if (effective === "direct") return;
  const apps = b.resources.apps ?? {};
  if (Object.values(apps).some((a) => a?.lifecycle?.started !== undefined))
    fail(
      `lifecycle.started is only supported in direct deployment mode\n  in databricks.yml:${b.startedLine}:18\n\n`,
    );
}

if (cmd === "validate") {
  if (scenario.validateError) fail(scenario.validateError);
  process.stdout.write(
    `Name: ${b.yml.bundle.name}\nTarget: ${b.target}\nWorkspace:\n  User: ${currentUser()}\n  Path: ${b.root}\n\nValidation OK!\n`,
  );
  process.exit(0);
}

async function waitApp(name) {
  for (let i = 0; i < 600; i++) {
    const r = await api("GET", `/api/2.0/apps/${name}`);
    const s = r.body.compute_status?.state;
    if (s === "ACTIVE" || s === "STOPPED") return r.body;
    if (s === "ERROR")
      fail(`failed to reach ACTIVE or STOPPED, got ERROR: ${r.body.compute_status?.message}`);
    await new Promise((res) => setTimeout(res, 50));
  }
  fail(`app ${name} did not settle`);
}

/** appdeploy.Deploy: a SNAPSHOT of source_code_path, waiting for a deployment already in flight first. */
/**
 * bundle/direct/dresources/app.go → appdeploy.Deploy: a SNAPSHOT of source_code_path; refused (another in
 * flight): wait for one IN_PROGRESS, try once more; then followed with `✓ <message>` per poll (stderr).
 */
async function deployCode(name, sourcePath) {
  const body = { mode: "SNAPSHOT", source_code_path: sourcePath };
  let r = await call("POST", `/api/2.0/apps/${name}/deployments`, body);
  if (r.status !== 200) {
    const again = await call("GET", `/api/2.0/apps/${name}`);
    if (again.status !== 200) fail(`failed to get app ${name}: ${again.body.message}`);
    await waitForDeploymentToComplete(again.body);
    r = await call("POST", `/api/2.0/apps/${name}/deployments`, body);
    if (r.status !== 200) fail(`${r.body.message} (${r.status} ${r.body.error_code})`);
  }
  await waitDeploymentSucceeded(name, r.body.deployment_id, (d) => progress(d.status?.message));
}

/**
 * An app's `permissions` as the direct engine sends them (bundle/config/mutator/resourcemutator/
 * fix_permissions.go, acceptance/bundle/resources/permissions/apps/*): the deploying user gets CAN_MANAGE
 * added when not listed, each principal keeps its highest level, then one PUT of the whole list.
 */
function permissionsAcl(permissions) {
  if (!Array.isArray(permissions) || permissions.length === 0) return undefined;
  const rank = { CAN_USE: 1, CAN_MANAGE: 2 };
  const entries = permissions.map((p) => ({ ...p, level: b.resolve(p.level) }));
  const me = currentUser();
  if (!entries.some((e) => (e.user_name ?? e.service_principal_name) === me && e.level === "CAN_MANAGE"))
    entries.push({
      level: "CAN_MANAGE",
      [/^[0-9a-f-]{36}$/i.test(me) ? "service_principal_name" : "user_name"]: me,
    });
  const byWho = new Map();
  for (const e of entries) {
    const { level, ...who } = e;
    const k = JSON.stringify(who);
    if (!byWho.has(k) || rank[level] > rank[byWho.get(k).permission_level])
      byWho.set(k, { ...who, permission_level: level });
  }
  return [...byWho.values()];
}

async function putPermissions(key, name, acl) {
  const q = `/api/2.0/permissions/apps/${name}`;
  const r = await api("PUT", q, { access_control_list: acl });
  if (r.status !== 200) {
    save();
    apiFail("create", `apps.${key}.permissions`, r, "PUT", q);
  }
}

function syncFiles() {
  const filesRoot = `${b.root}/files`;
  const local = path.join(scenario.fsRoot, filesRoot);
  for (const p of b.yml.sync?.paths ?? ["."]) {
    const src = path.join(process.cwd(), p);
    const dest = path.join(local, p);
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(path.dirname(dest), { recursive: true });
    if (existsSync(src))
      cpSync(src, dest, {
        recursive: true,
        verbatimSymlinks: true,
        filter: (f) => !/(^|\/)\.env(\.|$)/.test(path.basename(f)) && !f.includes("/.git/"),
      });
  }
  return filesRoot;
}

if (cmd === "deploy") {
  if (scenario.deployError) fail(scenario.deployError);
  checkLifecycleEngine();
  const ts = targetState();
  const rs = ts.resources;
  process.stdout.write(`Uploading bundle files to ${b.root}/files...\n`);
  const filesRoot = syncFiles();
  await api("POST", "/api/2.0/workspace/mkdirs", { path: `${b.root}/state` });
  const lines = [];
  // Lakebase first: the app refers to them.
  for (const [key, p] of Object.entries(b.resources.postgres_projects ?? {})) {
    if (rs.postgres_projects?.[key]) continue;
    const id = b.resolve(p.project_id);
    const q = `/api/2.0/postgres/projects?project_id=${encodeURIComponent(id)}`;
    const r = await api("POST", q, { spec: { display_name: b.resolve(p.display_name ?? id) } });
    if (r.status !== 200) apiFail("create", `postgres_projects.${key}`, r, "POST", q);
    rs.postgres_projects = {
      ...rs.postgres_projects,
      [key]: { id: `projects/${id}`, project_id: id, purge_on_delete: p.purge_on_delete === true },
    };
    lines.push(`Created postgres_projects.${key}`);
  }
  for (const [key, p] of Object.entries(b.resources.postgres_projects ?? {}))
    if (rs.postgres_projects?.[key]) rs.postgres_projects[key].purge_on_delete = p.purge_on_delete === true;
  for (const [key, role] of Object.entries(b.resources.postgres_roles ?? {})) {
    if (rs.postgres_roles?.[key]) continue;
    const parent = b.resolve(role.parent, rs);
    const q = `/api/2.0/postgres/${parent}/roles?role_id=${encodeURIComponent(role.role_id)}`;
    const r = await api("POST", q, { spec: { postgres_role: role.postgres_role } });
    if (r.status !== 200) apiFail("create", `postgres_roles.${key}`, r, "POST", q);
    rs.postgres_roles = { ...rs.postgres_roles, [key]: { id: `${parent}/roles/${role.role_id}` } };
    lines.push(`Created postgres_roles.${key}`);
  }
  for (const [key, db] of Object.entries(b.resources.postgres_databases ?? {})) {
    if (rs.postgres_databases?.[key]) continue;
    const parent = b.resolve(db.parent, rs);
    const id = b.resolve(db.database_id);
    const q = `/api/2.0/postgres/${parent}/databases?database_id=${encodeURIComponent(id)}`;
    const r = await api("POST", q, {
      spec: {
        postgres_database: b.resolve(db.postgres_database ?? id),
        role: b.resolve(db.role ?? "", rs) || undefined,
      },
    });
    if (r.status !== 200) {
      save();
      apiFail("create", `postgres_databases.${key}`, r, "POST", q);
    }
    rs.postgres_databases = { ...rs.postgres_databases, [key]: { id: `${parent}/databases/${id}` } };
    lines.push(`Created postgres_databases.${key}`);
  }
  for (const [key, inst] of Object.entries(b.resources.database_instances ?? {})) {
    if (rs.database_instances?.[key]) continue;
    const r = await api("POST", "/api/2.0/database/instances", { name: b.resolve(inst.name) });
    if (r.status !== 200)
      apiFail("create", `database_instances.${key}`, r, "POST", "/api/2.0/database/instances");
  }
  for (const [key, scope] of Object.entries(b.resources.secret_scopes ?? {})) {
    if (rs.secret_scopes?.[key]) continue;
    const name = b.resolve(scope.name);
    await api("POST", "/api/2.0/secrets/scopes/create", { scope: name, scope_backend_type: "DATABRICKS" });
    rs.secret_scopes = { ...rs.secret_scopes, [key]: { name, id: name } };
    lines.push(`Created secret_scopes.${key}`);
  }
  for (const [key, app] of Object.entries(b.resources.apps ?? {})) {
    const name = b.resolve(app.name);
    const resources = JSON.parse(b.resolve(JSON.stringify(app.resources ?? []), rs));
    const desired = {
      name,
      description: app.description,
      resources,
      ...(app.compute_size ? { compute_size: b.resolve(app.compute_size) } : {}),
      // A field the user adds is sent like ours (it is in the update mask below, app.go).
      ...(app.budget_policy_id ? { budget_policy_id: b.resolve(app.budget_policy_id) } : {}),
    };
    const acl = permissionsAcl(app.permissions);
    const started = app.lifecycle?.started === true;
    const sourcePath = `${filesRoot}/${String(app.source_code_path).replace(/^\.\//, "")}`;
    const known = rs.apps?.[key];
    if (!known) {
      const r = await api("POST", `/api/2.0/apps?no_compute=${started ? "false" : "true"}`, desired);
      if (r.status !== 200) {
        save();
        apiFail("create", `apps.${key}`, r, "POST", "/api/2.0/apps");
      }
      rs.apps = { ...rs.apps, [key]: { ...desired, started, id: name } };
      save();
      await waitApp(name);
      if (started) await deployCode(name, sourcePath);
      lines.push(`Created apps.${key}`);
      if (acl) {
        await putPermissions(key, name, acl);
        rs.apps[key].acl = acl;
        lines.push(`Created apps.${key}.permissions`);
      }
      continue;
    }
    if (acl && JSON.stringify(acl) !== JSON.stringify(known.acl)) {
      await putPermissions(key, name, acl);
      lines.push(`${known.acl ? "Updated" : "Created"} apps.${key}.permissions`);
      known.acl = acl;
    }
    const remote = (await api("GET", `/api/2.0/apps/${name}`)).body;
    const remoteStarted = !["STOPPED", "ERROR", undefined].includes(remote.compute_status?.state);
    const changed =
      JSON.stringify({
        d: known.description,
        r: known.resources,
        c: known.compute_size,
        p: known.budget_policy_id,
      }) !==
      JSON.stringify({
        d: desired.description,
        r: desired.resources,
        c: desired.compute_size,
        p: desired.budget_policy_id,
      });
    if (!changed && remoteStarted === started) continue;
    if (changed) {
      const r = await api("POST", `/api/2.0/apps/${name}/update`, {
        app: desired,
        update_mask:
          "description,budget_policy_id,usage_policy_id,resources,user_api_scopes,forward_user_access_token,compute_size,compute_min_instances,compute_max_instances,git_repository,telemetry_export_destinations",
      });
      if (r.status !== 200) apiFail("update", `apps.${key}`, r, "POST", `/api/2.0/apps/${name}/update`);
    }
    if (started) {
      if (!remoteStarted) {
        await api("POST", `/api/2.0/apps/${name}/start`);
        await waitApp(name);
      }
      await deployCode(name, sourcePath);
    } else if (remoteStarted) await api("POST", `/api/2.0/apps/${name}/stop`);
    rs.apps[key] = { ...desired, started, id: name, acl: known.acl };
    lines.push(`Updated apps.${key}`);
  }
  ts.engine = "direct";
  save();
  process.stdout.write(`${lines.join("\n")}${lines.length ? "\n" : ""}Deployment complete!\n`);
  process.exit(0);
}
if (cmd === "summary") {
  const rs = state.targets[stateKey]?.resources ?? {};
  const out = { apps: {} };
  // Every resource type of the bundle, each with its id once deployed, else modified_status created
  // (recorded: bundle_summary_modified_status).
  for (const [key, p] of Object.entries(b.resources.postgres_projects ?? {})) {
    out.postgres_projects ??= {};
    out.postgres_projects[key] = {
      project_id: b.resolve(p.project_id),
      ...(rs.postgres_projects?.[key]
        ? { id: rs.postgres_projects[key].id }
        : { modified_status: "created" }),
    };
  }
  for (const [key, app] of Object.entries(b.resources.apps ?? {})) {
    const name = b.resolve(app.name);
    out.apps[key] = {
      name,
      source_code_path: `${b.root}/files/${String(app.source_code_path).replace(/^\.\//, "")}`,
      ...(rs.apps?.[key]
        ? { id: name, url: `${scenario.host}/apps/${name}` }
        : { modified_status: "created" }),
    };
  }
  process.stdout.write(
    `${JSON.stringify(
      {
        bundle: {
          name: b.yml.bundle.name,
          target: b.target,
          ...(b.yml.bundle.engine ? { engine: b.yml.bundle.engine } : {}),
        },
        workspace: { file_path: `${b.root}/files`, root_path: b.root, state_path: `${b.root}/state` },
        resources: out,
      },
      null,
      2,
    )}\n`,
  );
  process.exit(0);
}
if (cmd === "destroy") {
  // cmd/bundle/destroy.go CommandBundleDestroy: no terminal to ask on, so --auto-approve is required.
  if (!flag("auto-approve"))
    fail(
      "this command will destroy all resources deployed by this bundle, including workspace files in the deployment directory.\nDeleting data assets such as schemas, pipelines, or volumes may cause permanent data loss and should be carefully reviewed.\nTo proceed, use --auto-approve.",
    );
  const rs = state.targets[stateKey]?.resources ?? {};
  const keys = Object.entries(rs)
    .flatMap(([type, m]) => Object.keys(m).map((k) => `${type}.${k}`))
    .sort();
  process.stdout.write(
    `The following resources will be deleted:\n${keys.map((k) => `  delete resources.${k}`).join("\n")}\n\n`,
  );
  for (const app of Object.values(rs.apps ?? {})) await api("DELETE", `/api/2.0/apps/${app.id}`);
  for (const scope of Object.values(rs.secret_scopes ?? {}))
    await api("POST", "/api/2.0/secrets/scopes/delete", { scope: scope.name });
  for (const p of Object.values(rs.postgres_projects ?? {}))
    await api(
      "DELETE",
      `/api/2.0/postgres/projects/${p.project_id}${p.purge_on_delete ? "?purge=true" : ""}`,
    );
  rmSync(path.join(scenario.fsRoot, b.root), { recursive: true, force: true });
  delete state.targets[stateKey];
  save();
  process.stdout.write(
    `All files and directories at the following location will be deleted: ${b.root}\n\nDestroy: ${keys.length} deleted\n`,
  );
  process.exit(0);
}
if (cmd === "sync") {
  // cmd/bundle/sync.go: the same files `bundle deploy` uploads, to the same place; silent unless
  // --output is given.
  if (!flag("dry-run")) syncFiles();
  process.exit(0);
}
if (cmd === "run") await bundleRun();
fail(`unknown command "${cmd}" for "databricks bundle"`);

/** The Go SDK's apps waiters (WaitGetAppActive, WaitGetDeploymentAppSucceeded): poll, report, judge. */
async function waitAppActive(name, onProgress) {
  const deadline = Date.now() + (scenario.deployTimeoutMs ?? 20 * 60_000);
  for (;;) {
    const r = await call("GET", `/api/2.0/apps/${name}`);
    if (r.status !== 200) fail(r.body.message);
    onProgress?.(r.body);
    const s = r.body.compute_status?.state;
    const msg = r.body.compute_status?.message ?? `current status: ${s}`;
    if (s === "ACTIVE") return r.body;
    if (s === "ERROR" || s === "STOPPED") fail(`failed to reach ACTIVE, got ${s}: ${msg}`);
    if (Date.now() > deadline) fail(`timed out: ${msg}`);
    await sleep(POLL_MS);
  }
}

async function waitDeploymentSucceeded(name, id, onProgress) {
  const deadline = Date.now() + (scenario.deployTimeoutMs ?? 20 * 60_000);
  for (;;) {
    const r = await call("GET", `/api/2.0/apps/${name}/deployments/${id}`);
    if (r.status !== 200) fail(r.body.message);
    onProgress?.(r.body);
    const s = r.body.status?.state;
    const msg = r.body.status?.message ?? `current status: ${s}`;
    if (s === "SUCCEEDED") return r.body;
    // Only FAILED ends the wait: CANCELLED (like any other state) is polled until the timeout.
    if (s === "FAILED") fail(`failed to reach SUCCEEDED, got FAILED: ${msg}`);
    if (Date.now() > deadline) fail(`timed out: ${msg}`);
    await sleep(POLL_MS);
  }
}

/** bundle/appdeploy/app.go WaitForDeploymentToComplete: only deployments IN_PROGRESS are waited for. */
async function waitForDeploymentToComplete(app) {
  for (const [which, d] of [
    ["active", app.active_deployment],
    ["pending", app.pending_deployment],
  ]) {
    if (d?.status?.state !== "IN_PROGRESS") continue;
    const title = which === "active" ? "Active" : "Pending";
    progress(`Waiting for the ${which} deployment to complete...`);
    await waitDeploymentSucceeded(app.name, d.deployment_id);
    progress(`${title} deployment is completed!`);
  }
}

/**
 * `bundle run <app key>` (cmd/bundle/run.go, bundle/run/app.go, bundle/appdeploy/app.go): the key first,
 * then the deployment state (none: refused), then the app: start it when its compute is stopped, wait
 * while it starts, then one SNAPSHOT deployment of its source_code_path (refused because another is in
 * flight: wait for that one if IN_PROGRESS, then once more), followed until SUCCEEDED or FAILED.
 * `--no-wait` is accepted and changes nothing for an app (the app runner never reads it).
 */
async function bundleRun() {
  const [key, ...extra] = cmdLine.positional;
  if (!key) fail("expected a KEY of the resource to run");
  const rs = state.targets[stateKey]?.resources ?? {};
  if (!Object.values(rs).some((m) => Object.keys(m).length > 0))
    fail("resource not found or not yet deployed. Did you forget to run 'databricks bundle deploy'?");
  const matches = Object.entries(b.resources).filter(
    ([type, m]) => ["apps", "jobs", "pipelines"].includes(type) && m && key.replace(/^\w+\./, "") in m,
  );
  if (matches.length === 0) fail(`resource with key "${key}" not found`);
  const [type, m] = matches[0];
  if (type !== "apps") fail(`the double runs apps only, not ${type}`);
  if (extra.length > 0) fail(`received ${extra.length} unexpected positional arguments`);
  const app = m[key.replace(/^\w+\./, "")];
  const name = b.resolve(app.name);
  progress(`Getting the status of the app ${name}`);
  const got = await call("GET", `/api/2.0/apps/${name}`);
  if (got.status !== 200) fail(got.body.message);
  const current = got.body;
  if (current.app_status) progress(`App is in ${current.app_status.state} state`);
  if (current.compute_status) progress(`App compute is in ${current.compute_status.state} state`);
  const compute = current.compute_status?.state;
  if (!current.compute_status || compute === "STOPPED" || compute === "ERROR") {
    progress(`Starting the app ${name}`);
    const r = await call("POST", `/api/2.0/apps/${name}/start`, {});
    if (r.status !== 200) fail(r.body.message);
    const started = await waitAppActive(name, (a) => a.app_status && progress("App is starting..."));
    await waitForDeploymentToComplete(started);
    progress("App is started!");
  } else if (compute === "STARTING") await waitAppActive(name);
  const body = {
    mode: "SNAPSHOT",
    source_code_path: `${b.root}/files/${String(app.source_code_path).replace(/^\.\//, "")}`,
    ...(app.config?.command ? { command: app.config.command } : {}),
    ...(app.config?.env ? { env_vars: app.config.env } : {}),
  };
  let r = await call("POST", `/api/2.0/apps/${name}/deployments`, body);
  if (r.status !== 200) {
    const again = await call("GET", `/api/2.0/apps/${name}`);
    if (again.status !== 200) fail(`failed to get app ${name}: ${again.body.message}`);
    await waitForDeploymentToComplete(again.body);
    r = await call("POST", `/api/2.0/apps/${name}/deployments`, body);
    if (r.status !== 200) fail(r.body.message);
  }
  await waitDeploymentSucceeded(name, r.body.deployment_id, (d) => progress(d.status?.message));
  process.stderr.write(`You can access the app at ${current.url}\n`);
  process.exit(0);
}

/**
 * `apps logs NAME` (cmd/apps/logs.go, libs/apps/logstream): the app's URL from the Apps API (none, or
 * no http(s) scheme: refused), then `wss://<app>/logz/stream` with the profile's OAuth token, Origin and
 * User-Agent; the search term as the first message; each entry printed as `RFC3339 [SOURCE] message`
 * (`-o json`: one JSON object a line). Without --follow: the last --tail-lines entries (default 200) once
 * the stream is quiet for 2 s (0: until the stream ends). With --follow: those, then every new entry;
 * a dropped stream is reopened after 200 ms doubling to 5 s (reset after a clean close), first checking the
 * app still runs; nothing is printed about it, and entries the server sends again are printed again.
 */
async function appsLogs() {
  const name = cmdLine.positional[0];
  if (!name) fail("missing required argument: NAME");
  const tail = flag("tail-lines") === undefined ? 200 : Number(flag("tail-lines"));
  if (!Number.isInteger(tail))
    fail(
      `invalid argument "${flag("tail-lines")}" for "--tail-lines" flag: strconv.ParseInt: parsing "${flag("tail-lines")}": invalid syntax`,
    );
  if (tail < 0) fail("--tail-lines cannot be negative");
  const follow = flag("follow") === true;
  const json = flag("output") === "json";
  // buildSourceFilter: APP and/or SYSTEM, case-insensitive.
  const sources = new Set();
  for (const v of flag("source") ?? []) {
    const t = v.trim().toUpperCase();
    if (!t) continue;
    if (!["APP", "SYSTEM"].includes(t)) fail(`invalid --source value "${v}" (valid: APP, SYSTEM)`);
    sources.add(t);
  }
  const got = await call("GET", `/api/2.0/apps/${name}`);
  if (got.status !== 200) fail(got.body.message);
  const url = got.body.url ?? "";
  if (!url) fail(`app ${name} does not have a public URL; deploy and start it before streaming logs`);
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase() ?? "";
  const wsScheme = { https: "wss", http: "ws", wss: "wss", ws: "ws" }[scheme];
  if (!wsScheme) fail(`unsupported app URL scheme: ${scheme}`);
  const parsed = new URL(url);
  const origin = `${scheme.replace(/^ws/, "http")}://${parsed.host}`;
  const wsUrl = `${wsScheme}://${parsed.host}${parsed.pathname.replace(/\/+$/, "")}/logz/stream`;
  const format = (raw) => {
    let e;
    try {
      e = JSON.parse(raw);
    } catch {
      return raw.replace(/[\r\n]+$/, "");
    }
    const source = String(e.source ?? "").toUpperCase();
    if (sources.size > 0 && !sources.has(source)) return "";
    const message = String(e.message ?? "").replace(/[\r\n]+$/, "");
    if (json) return JSON.stringify({ source, timestamp: e.timestamp, message });
    const ts =
      e.timestamp > 0
        ? `${new Date(Math.trunc(e.timestamp) * 1000).toISOString().slice(0, 19)}Z`
        : "----------";
    return `${ts} [${source}] ${message}`;
  };
  let flushed = tail === 0;
  const buffer = [];
  const flush = () => {
    for (const l of buffer) process.stdout.write(`${l}\n`);
    buffer.length = 0;
    flushed = true;
  };
  // One connection: resolves "closed" (the server ended it) or rejects with the dial/stream error.
  const once = () =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, {
        headers: {
          authorization: `Bearer ${scenario.adminToken}`,
          origin,
          "user-agent": "databricks-cli apps logs",
        },
        handshakeTimeout: 30_000,
      });
      let timer;
      const quiet = () => {
        clearTimeout(timer);
        // The 2 s prefetch window (consume_state.go): the tail is flushed when it closes.
        if (!flushed)
          timer = setTimeout(() => {
            flush();
            if (!follow) {
              ws.terminate();
              resolve("done");
            }
          }, 2000);
      };
      ws.on("unexpected-response", (_req, res) => {
        res.resume();
        reject(new Error(`websocket: bad handshake (HTTP ${res.statusCode} ${res.statusMessage})`));
      });
      ws.on("open", () => {
        ws.send(flag("search") ?? "");
        quiet();
      });
      ws.on("message", (data) => {
        const line = format(String(data));
        if (!line) return;
        if (flushed) process.stdout.write(`${line}\n`);
        else {
          buffer.push(line);
          if (buffer.length > tail) buffer.shift();
        }
      });
      ws.on("close", () => {
        clearTimeout(timer);
        resolve("closed");
      });
      ws.on("error", (err) => {
        clearTimeout(timer);
        const c =
          err.code === "ECONNREFUSED" ? `dial tcp ${parsed.host}: connect: connection refused` : err.message;
        reject(new Error(c));
      });
    });
  let delay = 200;
  for (;;) {
    let ended;
    try {
      ended = await once();
    } catch (err) {
      if (!follow) fail(err.message);
      await appStillRuns(name);
      await sleep(delay);
      delay = Math.min(delay * 2, 5000);
      continue;
    }
    if (!flushed) flush();
    if (!follow || ended === "done") process.exit(0);
    await appStillRuns(name);
    delay = 200;
    await sleep(delay);
    delay = 400;
  }
}

/** logs.go appStatusChecker: a stopped, deleting or failed app ends --follow. */
async function appStillRuns(name) {
  const r = await call("GET", `/api/2.0/apps/${name}`);
  if (r.status !== 200) fail(`app is no longer available: ${r.body.message}`);
  const s = r.body.compute_status?.state;
  if (!s) fail("app is no longer available: app status unavailable");
  if (["STOPPED", "DELETING", "ERROR"].includes(s)) fail(`app is no longer available: app is ${s}`);
}
