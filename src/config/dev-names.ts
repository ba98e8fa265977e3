import { createHash } from "node:crypto";

/**
 * Per-developer dev names. Development mode prefixes no app, secret scope or Lakebase project name (the
 * CLI's `apply_presets.go`: "Apps: No presets"), and each of those names is unique per workspace: two
 * developers deploying dev with one fixed name collide half-way through `bundle deploy`. So every dev name
 * carries the deploying user's segment, and prod names stay fixed.
 */

/** The longest app name the platform accepts (the CLI's `libs/apps/prompt/prompt.go`: MaxAppNameLength = 30). */
export const MAX_APP_NAME = 30;

/** A dev-user segment: lower-case letters and digits in dash-separated runs (valid in every name we derive). */
export const DEV_USER_PATTERN = /^[a-z0-9]+(-[a-z0-9]+)*$/;

function shortHash(text: string, length: number): string {
  return createHash("sha256").update(text).digest("hex").slice(0, length);
}

/**
 * The CLI's `${workspace.current_user.domain_friendly_name}` (`libs/iamutil/user.go`): the user name's local
 * part (a service principal's display name), lower-cased, runs of anything but letters and digits as one
 * separator, marks removed; then, unlike the CLI, only ASCII letters and digits are kept (app names allow
 * nothing else) and the separators are dashes. `short_name` itself keeps `_` and `.`-free unicode letters,
 * which no app name accepts: `jane.doe@x.com` is `jane_doe` there and `jane-doe` here.
 * A name with nothing left (all non-Latin) gets a stable hash of the user name.
 */
export function devUserSegment(user: { userName?: string; displayName?: string }): string {
  const userName = user.userName ?? "";
  const isServicePrincipal = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(userName);
  const name = isServicePrincipal && user.displayName ? user.displayName : userName;
  const local = name.split("@")[0] ?? "";
  const slug = local
    .normalize("NFD")
    .replace(/\p{Mn}/gu, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return slug || `u-${shortHash(userName || name, 8)}`;
}

/**
 * `<base>-dev-<user>`, at most {@link MAX_APP_NAME} characters: a user segment that does not fit is cut and
 * given a hash of the whole segment, so two long names that share a beginning still differ.
 */
export function devAppName(base: string, user: string): string {
  const prefix = `${base}-dev-`;
  const room = MAX_APP_NAME - prefix.length;
  if (user.length <= room) return `${prefix}${user}`;
  const hash = shortHash(user, 4);
  const kept = user.slice(0, Math.max(0, room - hash.length - 1)).replace(/-+$/, "");
  return kept ? `${prefix}${kept}-${hash}` : `${prefix}${hash}`.slice(0, MAX_APP_NAME);
}
