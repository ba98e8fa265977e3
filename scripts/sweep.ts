/**
 * `npm run sweep -- --repo <url> [--build] [--refs a,b] [--work-dir DIR] [--keep] [--json]`
 *
 * Prepares every stable-numbered tag (`vX.Y.Z`, on the default branch or off it) and the default branch
 * of a MetaMCP repository with this tool's own `prepare`, migrates each on an embedded PostgreSQL as the
 * Lakebase-like role (CONNECT and CREATE on its database, nothing in `public`) with the runtime's own
 * migration code, and counts the objects in `public` and in our schema. With `--build`, builds each too
 * (`build`: pnpm install + upstream's build + the app tree under the 10 MB rule). One line a ref, then a total.
 *
 * Our code, not CI's (CI can't reach GitHub): docs/releases.md has the table from the last run. Exit 0
 * when every ref that holds a MetaMCP 2 tree passed, 1 otherwise.
 */
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import semver from "semver";
import { buildApp } from "../src/build/build-app.js";
import { RUNTIME_BUNDLE_PATH } from "../src/build/locations.js";
import { isUserError } from "../src/errors.js";
import {
  type EmbeddedPostgresHandle,
  provisionLakebaseRole,
  setRolePassword,
  startEmbeddedPostgres,
} from "../src/local/postgres.js";
import { createLogger, type Logger } from "../src/log/logger.js";
import {
  ensureSchema,
  loadDrizzleMigrator,
  runMigrations,
  searchPathOption,
} from "../src/runtime/database.js";
import { normalizeRepoUrl, syncMirror } from "../src/upstream/cache.js";
import { git } from "../src/upstream/git.js";
import { OVERLAY_PATH, toolRoot } from "../src/upstream/locations.js";
import { prepareUpstream } from "../src/upstream/prepare.js";
import { listRefs, stableVersion } from "../src/upstream/refs.js";

export interface SweepRef {
  name: string;
  commit: string;
  kind: "tag on default branch" | "tag off default branch" | "default branch" | "requested";
}

export interface ObjectCounts {
  tables: number;
  indexes: number;
  sequences: number;
  views: number;
  types: number;
  functions: number;
}

export interface SweepResult {
  ref: string;
  commit: string;
  kind: SweepRef["kind"];
  status: "ok" | "fail" | "skip";
  /** Where it stopped, or why it was skipped. */
  stage?: "prepare" | "migrate" | "build" | "layout";
  reason?: string;
  form?: string;
  tables?: number;
  enums?: number;
  migrations?: number;
  publicObjects?: number;
  schemaObjects?: ObjectCounts;
  build?: { files: number; mb: number; largestMb: number; prunedNext: boolean; seconds: number };
  seconds: number;
}

export interface SweepOptions {
  repoUrl: string;
  refs?: string[];
  build?: boolean;
  schema?: string;
  workDir: string;
  keep?: boolean;
  log: Logger;
  onResult?: (r: SweepResult) => void;
}

/** Stable-numbered tags (on the default branch and off it, version order) and the default branch. */
export async function sweepRefs(gitDir: string, defaultBranch: string): Promise<SweepRef[]> {
  const refs = await listRefs(gitDir, defaultBranch);
  const tags = refs.tags
    .filter((t) => stableVersion(t.name))
    .sort((a, b) => semver.compare(stableVersion(a.name)!, stableVersion(b.name)!))
    .map(
      (t): SweepRef => ({
        name: t.name,
        commit: t.commit,
        kind: refs.tagsOnDefaultBranch.has(t.name) ? "tag on default branch" : "tag off default branch",
      }),
    );
  const head = refs.branches.find((b) => b.name === defaultBranch);
  return head ? [...tags, { name: head.name, commit: head.commit, kind: "default branch" }] : tags;
}

async function hasBackend(gitDir: string, commit: string): Promise<boolean> {
  const r = await git(["cat-file", "-e", `${commit}:apps/backend/package.json`], {
    gitDir,
    allowFailure: true,
  });
  return r.exitCode === 0;
}

const COUNT_SQL = `
  SELECT
    count(*) FILTER (WHERE c.relkind IN ('r', 'p')) AS tables,
    count(*) FILTER (WHERE c.relkind IN ('i', 'I')) AS indexes,
    count(*) FILTER (WHERE c.relkind = 'S') AS sequences,
    count(*) FILTER (WHERE c.relkind IN ('v', 'm')) AS views
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1`;
const TYPES_SQL = `
  SELECT count(*) AS n FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname = $1 AND t.typtype IN ('e', 'd', 'r', 'm') OR (n.nspname = $1 AND t.typtype = 'c'
    AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c'))`;
const FUNCTIONS_SQL = `SELECT count(*) AS n FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1`;

/** Every object a migration can create in a schema: relations, user types (enums...), functions. */
export async function countObjects(client: pg.Client, schema: string): Promise<ObjectCounts> {
  const rel = (await client.query(COUNT_SQL, [schema])).rows[0] as Record<string, string>;
  const types = (await client.query(TYPES_SQL, [schema])).rows[0] as { n: string };
  const fns = (await client.query(FUNCTIONS_SQL, [schema])).rows[0] as { n: string };
  return {
    tables: Number(rel.tables),
    indexes: Number(rel.indexes),
    sequences: Number(rel.sequences),
    views: Number(rel.views),
    types: Number(types.n),
    functions: Number(fns.n),
  };
}

export const totalObjects = (c: ObjectCounts): number =>
  c.tables + c.indexes + c.sequences + c.views + c.types + c.functions;

/** Migrates a prepared tree into a fresh database as the Lakebase-like role; counts what landed where. */
async function migrateAsLakebaseRole(
  pgServer: EmbeddedPostgresHandle,
  database: string,
  migrationsFolder: string,
  schema: string,
  log: Logger,
): Promise<{ applied: number; publicObjects: number; schemaObjects: ObjectCounts }> {
  const role = "sweep-app-sp";
  const password = `sweep-${Math.random().toString(36).slice(2)}`;
  await provisionLakebaseRole(pgServer.adminUrl(), { database, role });
  await setRolePassword(pgServer.adminUrl(), role, password, new Date(Date.now() + 3600_000));
  const client = new pg.Client({
    host: pgServer.host,
    port: pgServer.port,
    database,
    user: role,
    password,
    options: searchPathOption(schema),
  });
  await client.connect();
  try {
    await ensureSchema(client, schema);
    // A prepared tree has no node_modules: this project's drizzle-orm (a devDependency) stands in for the backend's.
    const migrator = loadDrizzleMigrator(toolRoot());
    const m = await runMigrations(client, { migrationsFolder, schema, log, migrator });
    // A second run must find the journal in our schema and apply nothing.
    const again = await runMigrations(client, { migrationsFolder, schema, log, migrator });
    if (again.applied !== 0) throw new Error(`a second migration run applied ${again.applied} migration(s)`);
    const pub = await countObjects(client, "public");
    return {
      applied: m.applied,
      publicObjects: totalObjects(pub),
      schemaObjects: await countObjects(client, schema),
    };
  } finally {
    await client.end().catch(() => {});
  }
}

export async function sweep(options: SweepOptions): Promise<SweepResult[]> {
  const { log } = options;
  const schema = options.schema ?? "metamcp_app";
  const repoUrl = normalizeRepoUrl(options.repoUrl, process.cwd());
  const cacheDir = path.join(options.workDir, "cache");
  const mirror = await syncMirror(repoUrl, cacheDir, log);
  let refs = await sweepRefs(mirror.gitDir, mirror.defaultBranch);
  if (options.refs?.length) {
    const known = new Map(refs.map((r) => [r.name, r]));
    refs = options.refs.map((name) => known.get(name) ?? { name, commit: "", kind: "requested" });
  }
  const pgDir = mkdtempSync(path.join(os.tmpdir(), "mmdb-sweep-pg-"));
  rmSync(pgDir, { recursive: true, force: true });
  const pgServer = await startEmbeddedPostgres({
    dataDir: pgDir,
    persistent: false,
    superPassword: `sweep-${Math.random().toString(36).slice(2)}`,
  });
  const results: SweepResult[] = [];
  const root = toolRoot();
  try {
    for (const [i, ref] of refs.entries()) {
      const started = performance.now();
      const done = (r: Omit<SweepResult, "ref" | "commit" | "kind" | "seconds">) => {
        const result: SweepResult = {
          ref: ref.name,
          commit: ref.commit.slice(0, 12),
          kind: ref.kind,
          ...r,
          seconds: Math.round((performance.now() - started) / 100) / 10,
        };
        results.push(result);
        options.onResult?.(result);
      };
      if (ref.commit && !(await hasBackend(mirror.gitDir, ref.commit))) {
        done({
          status: "skip",
          stage: "layout",
          reason: "no apps/backend: not a MetaMCP 2 tree (the 0.x line was another application)",
        });
        continue;
      }
      const refDir = path.join(options.workDir, "refs", ref.name.replace(/[^\w.-]/g, "_"));
      const buildDir = path.join(refDir, "metamcp");
      mkdirSync(refDir, { recursive: true });
      const refLog = createLogger({
        stream: createWriteStream(path.join(refDir, "sweep.log")),
        tag: ref.name,
      });
      let stage: SweepResult["stage"] = "prepare";
      try {
        const prepared = await prepareUpstream({
          repoUrl,
          ref: ref.name,
          buildDir,
          schema,
          cacheDir,
          overlayDir: path.join(root, OVERLAY_PATH),
          toolVersion: "sweep",
          log: refLog,
        });
        const patch = (id: string) => prepared.manifest.patches.find((p) => p.id === id);
        const dbEdits = patch("db-pool-credentials")?.files[0]?.edits;
        const counts = patch("drizzle-schema")?.counts ?? {};
        stage = "migrate";
        const migrated = await migrateAsLakebaseRole(
          pgServer,
          `sweep_${i}`,
          path.join(buildDir, "apps/backend/drizzle"),
          schema,
          refLog,
        );
        if (migrated.publicObjects !== 0)
          throw new Error(`${migrated.publicObjects} object(s) landed in public`);
        let build: SweepResult["build"];
        if (options.build) {
          stage = "build";
          const b = await buildApp({
            buildDir,
            appDir: path.join(refDir, "app"),
            runtimeBundle: path.join(root, RUNTIME_BUNDLE_PATH),
            overlayDir: path.join(root, OVERLAY_PATH),
            toolVersion: "sweep",
            nodeVersion: process.versions.node,
            env: process.env,
            log: refLog,
          });
          build = {
            files: b.tree.files,
            mb: Math.round(b.tree.bytes / 1024 / 102.4) / 10,
            largestMb: Math.round(b.tree.largest.bytes / 1024 / 102.4) / 10,
            prunedNext: Object.keys(b.pruned).some((n) => n === "next" || n.startsWith("@next/")),
            seconds: Math.round(b.durationMs / 1000),
          };
        }
        done({
          status: "ok",
          form: dbEdits === 3 ? "drizzle(DATABASE_URL)" : dbEdits === 2 ? "new Pool" : `${dbEdits} edits`,
          tables: counts.tables,
          enums: counts.enums,
          migrations: migrated.applied,
          publicObjects: migrated.publicObjects,
          schemaObjects: migrated.schemaObjects,
          ...(build ? { build } : {}),
        });
        if (!options.keep) rmSync(refDir, { recursive: true, force: true });
      } catch (err) {
        const message = (err as Error).message?.split("\n")[0] ?? String(err);
        const code = isUserError(err) ? ` [${err.code}, exit ${err.exitCode}]` : "";
        done({ status: "fail", stage, reason: `${message}${code}` });
      }
    }
  } finally {
    await pgServer.stop();
    rmSync(pgDir, { recursive: true, force: true });
  }
  return results;
}

export function formatResult(r: SweepResult): string {
  const ref = `${r.ref.padEnd(9)} ${r.commit.padEnd(12)} ${r.kind.padEnd(21)}`;
  if (r.status !== "ok") return `${ref} ${r.status.toUpperCase().padEnd(4)} ${r.stage}: ${r.reason}`;
  const s = r.schemaObjects!;
  const built = r.build
    ? `  build ${r.build.files} files ${r.build.mb} MB, largest ${r.build.largestMb} MB${r.build.prunedNext ? ", next pruned" : ""} (${r.build.seconds}s)`
    : "";
  return (
    `${ref} OK   ${String(r.form).padEnd(21)} ${String(r.tables).padStart(2)} tables ${String(r.enums).padStart(2)} enums  ` +
    `${String(r.migrations).padStart(2)} migrations  public ${r.publicObjects}  ours ${totalObjects(s)} ` +
    `(${s.tables} tables, ${s.indexes} indexes, ${s.types} types)${built}  ${r.seconds}s`
  );
}

export function formatTotal(results: SweepResult[]): string {
  const n = (s: SweepResult["status"]) => results.filter((r) => r.status === s).length;
  const tried = results.length - n("skip");
  return `total: ${n("ok")} of ${tried} MetaMCP 2 refs OK, ${n("fail")} failing; ${n("skip")} skipped (not MetaMCP 2)`;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      repo: { type: "string" },
      build: { type: "boolean", default: false },
      refs: { type: "string" },
      schema: { type: "string" },
      "work-dir": { type: "string" },
      keep: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  if (!values.repo) {
    process.stderr.write(
      "usage: npm run sweep -- --repo <url> [--build] [--refs a,b] [--work-dir DIR] [--keep] [--json]\n",
    );
    return 2;
  }
  const runtimeBundle = path.join(toolRoot(), RUNTIME_BUNDLE_PATH);
  if (values.build && !existsSync(runtimeBundle)) {
    process.stderr.write(`--build ships our runtime bundle, ${runtimeBundle}: run \`npm run build\` first\n`);
    return 2;
  }
  const workDir = path.resolve(values["work-dir"] ?? mkdtempSync(path.join(os.tmpdir(), "mmdb-sweep-")));
  mkdirSync(workDir, { recursive: true });
  const log = createLogger({ level: 1 });
  process.stderr.write(`sweep of ${values.repo} in ${workDir}${values.build ? " (with build)" : ""}\n`);
  const results = await sweep({
    repoUrl: values.repo,
    refs: values.refs
      ?.split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    build: values.build,
    schema: values.schema,
    workDir,
    keep: values.keep,
    log,
    onResult: (r) => {
      if (!values.json) process.stdout.write(`${formatResult(r)}\n`);
    },
  });
  if (values.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else process.stdout.write(`${formatTotal(results)}\n`);
  if (!values["work-dir"] && !values.keep) rmSync(workDir, { recursive: true, force: true });
  return results.some((r) => r.status === "fail") ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === new URL(import.meta.url).pathname) {
  process.exitCode = await main();
}
