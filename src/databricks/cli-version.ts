/**
 * The oldest Databricks CLI that has everything we call, per the CLI's CHANGELOG.md and its release tags
 * (databricks/cli, read at v1.13.0):
 * - `postgres_roles` / `postgres_databases` bundle resources: v1.4.0 (CHANGELOG "Release v1.4.0", #5467;
 *   `bundle/config/resources/postgres_role.go` is absent at tag v1.3.0, present at v1.4.0) — the highest;
 * - `purge_on_delete` on `postgres_projects`: v1.2.0 (#5414);
 * - `lifecycle.started` for apps (direct engine deploys the code): v0.297.0 (#4672);
 * - `bundle.engine`: v0.295.0 (#4749);
 * - `apps logs` with `--follow`, `--search`, `--tail-lines`: `cmd/apps/logs.go` first in tag v0.286.0
 *   (the command itself: v0.279.0, #3908);
 * - `bundle deploy` / `run` / `destroy` / `summary -o json`, `apps get`, `secrets put-secret` (stdin): all
 *   older than these (e.g. `bundle summary` #1731, `secrets put-secret` #413).
 * The bundle states the same floor (`bundle.databricks_cli_version`), so the CLI itself refuses an older
 * binary too.
 */
export const MIN_CLI_VERSION = "1.4.0";

/** Why the floor is what it is, for the message that refuses an older CLI. */
export const MIN_CLI_REASON =
  "Lakebase postgres_roles and postgres_databases (v1.4.0), app lifecycle.started on the direct engine (v0.297.0)";
