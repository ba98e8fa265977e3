#!/usr/bin/env node
// Contract double of the Databricks CLI for tests (the real one is not on npm). It records its argv,
// answers with output shaped like the CLI's recorded runs and, for `bundle deploy`/`destroy`, makes the
// REST calls the real CLI makes against the test's workspace emulator, with the real CLI's rules (from
// its source, bundle/direct/dresources/app.go and bundle/phases, described in
// test/databricks/fixtures/platform-cases.md):
// - the engine: bundle.engine > DATABRICKS_BUNDLE_ENGINE > the existing state's engine > direct (CLI
//   >= 1.3.0; terraform before); an existing terraform state is deployed with terraform whatever is asked;
//   on terraform, lifecycle.started fails `bundle deploy`/`plan` (not `validate`);
// - bundle.databricks_cli_version is enforced;
// - apps (direct): created with no_compute unless lifecycle.started is true; when started, the CLI starts
//   the app if needed and makes a SNAPSHOT deployment of source_code_path and waits for it, on create
//   and whenever the app changes or was stopped; a deploy that changes nothing deploys no code;
// - Lakebase: projects, roles, databases created through the Postgres API (the API enforces the ids);
//   destroy purges a project only with purge_on_delete.
// Scenario and state live in $DBX_DOUBLE_DIR (scenario.json, state.json, calls.jsonl).
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
const state = existsSync(statePath) ? JSON.parse(readFileSync(statePath, "utf8")) : { targets: {} };
const save = () => writeFileSync(statePath, JSON.stringify(state, null, 2));

function fail(message, code = 1) {
  process.stderr.write(`Error: ${message}\n`);
  process.exit(code);
}
function flag(name) {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}
const positional = argv.filter((a, i) => !a.startsWith("-") && !(i > 0 && argv[i - 1].startsWith("-")));

/** Who the profile signs in as: `profileUsers[profile]`, else `userName` (one person per profile). */
function currentUser() {
  const profile = flag("--profile") ?? process.env.DATABRICKS_CONFIG_PROFILE ?? "DEFAULT";
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
    flag("--target") ?? Object.keys(yml.targets ?? {}).find((t) => yml.targets[t].default) ?? "default";
  if (yml.targets && !yml.targets[target])
    fail(`${target}: no such target. Available targets: ${Object.keys(yml.targets ?? {}).join(", ")}`);
  const constraint = yml.bundle?.databricks_cli_version;
  const min = /^>=\s*(\d+\.\d+\.\d+)$/.exec(constraint ?? "")?.[1];
  if (min && semverLt(scenario.version, min))
    fail(
      `Databricks CLI version constraint not satisfied. Required: ${constraint}, current: ${scenario.version}`,
    );
  const vars = { ...(yml.targets?.[target]?.variables ?? {}) };
  argv.forEach((a, i) => {
    if (a === "--var") {
      const [k, ...v] = argv[i + 1].split("=");
      vars[k] = v.join("=");
    }
  });
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
if (cmd === "plan") {
  checkLifecycleEngine();
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
async function deployCode(name, sourcePath) {
  const body = { mode: "SNAPSHOT", source_code_path: sourcePath };
  let r = await api("POST", `/api/2.0/apps/${name}/deployments`, body);
  if (r.status !== 200) {
    const app = (await api("GET", `/api/2.0/apps/${name}`)).body;
    const inFlight = app.pending_deployment?.deployment_id;
    if (inFlight) await waitDeployment(name, inFlight);
    r = await api("POST", `/api/2.0/apps/${name}/deployments`, body);
    if (r.status !== 200) fail(`${r.body.message} (${r.status} ${r.body.error_code})`);
  }
  await waitDeployment(name, r.body.deployment_id);
}

async function waitDeployment(name, id) {
  const deadline = Date.now() + (scenario.deployTimeoutMs ?? 120_000);
  for (;;) {
    const d = (await api("GET", `/api/2.0/apps/${name}/deployments/${id}`)).body;
    const s = d.status?.state;
    if (s === "SUCCEEDED") {
      process.stdout.write(`✓ ${d.status.message}\n`);
      return;
    }
    if (s === "FAILED" || s === "CANCELLED") fail(`deployment ${id} ${s}: ${d.status?.message}`);
    if (Date.now() > deadline) fail(`timed out waiting for deployment ${id}`);
    await new Promise((res) => setTimeout(res, 100));
  }
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
  if (!argv.includes("--auto-approve"))
    fail("please specify --auto-approve since terminal does not support interactive prompts");
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
fail(`unknown command "${cmd}" for "databricks bundle"`);
