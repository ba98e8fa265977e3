/**
 * Names and forms shared by the CLI's config and the in-app runtime, with no dependency: the runtime
 * bundle (dist/runtime/start.mjs) must not pull the CLI's config code (and zod with it) for a regex.
 */
export const LAKEBASE_KINDS = ["autoscaling", "provisioned"] as const;
export type LakebaseKind = (typeof LAKEBASE_KINDS)[number];

/** PostgreSQL identifier we are willing to use quote-free: lower case, starts with a letter or _, <= 63 bytes. */
export const PG_IDENTIFIER_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;
export const PG_IDENTIFIER_FORM =
  "must be a PostgreSQL identifier: lower-case letters, digits and _, at most 63";
export const PG_IDENTIFIER_RESERVED =
  "must not be `public`, `information_schema` or start with `pg_` (PostgreSQL's own)";

/** Why `name` is not a schema name we can own, or undefined when it is one. */
export function pgIdentifierProblem(name: string): string | undefined {
  if (!PG_IDENTIFIER_PATTERN.test(name)) return PG_IDENTIFIER_FORM;
  if (name === "public" || name === "information_schema" || name.startsWith("pg_"))
    return PG_IDENTIFIER_RESERVED;
  return undefined;
}
