import type { Config } from "../config/load.js";

/**
 * Who may open and manage the app: APP_CAN_USE and APP_CAN_MANAGE, rendered as the app resource's
 * `permissions` in every target (without them only the deployer can open it). Each entry's kind comes from
 * its form, as the workspace itself names principals:
 * - an email (has `@`) is a user: `user_name`;
 * - a UUID is a service principal's application id: `service_principal_name` (the CLI's own test,
 *   `libs/iamutil/service_principal.go`: a user name that parses as a UUID is a service principal);
 * - anything else is a workspace group: `group_name` (`users` is every workspace user).
 */
export type PermissionLevel = "CAN_USE" | "CAN_MANAGE";

export type PrincipalKind = "user_name" | "service_principal_name" | "group_name";

export interface AppPermission {
  level: PermissionLevel;
  user_name?: string;
  service_principal_name?: string;
  group_name?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function principalKind(entry: string): PrincipalKind {
  if (entry.includes("@")) return "user_name";
  if (UUID.test(entry)) return "service_principal_name";
  return "group_name";
}

/** The entries of a comma list, trimmed, in order, each once. */
export function principalList(value: string | undefined): string[] {
  const seen = new Set<string>();
  for (const e of (value ?? "").split(",")) if (e.trim()) seen.add(e.trim());
  return [...seen];
}

export interface AppAccess {
  canUse: string[];
  canManage: string[];
  /** APP_CAN_MANAGE exactly as configured: the app's environment carries it as METAMCP_APP_MANAGERS. */
  managersValue: string;
}

export function appAccess(config: Config): AppAccess {
  const canManage = principalList(config.values.APP_CAN_MANAGE?.value);
  // A manager may open the app anyway: listed once, at the higher level.
  const canUse = principalList(config.values.APP_CAN_USE?.value).filter((p) => !canManage.includes(p));
  return { canUse, canManage, managersValue: config.values.APP_CAN_MANAGE?.value ?? "" };
}

/** The app resource's `permissions` (bundle schema: resources.AppPermission), managers first. */
export function appPermissions(access: AppAccess): AppPermission[] {
  const entry = (p: string, level: PermissionLevel): AppPermission => ({ [principalKind(p)]: p, level });
  return [
    ...access.canManage.map((p) => entry(p, "CAN_MANAGE")),
    ...access.canUse.map((p) => entry(p, "CAN_USE")),
  ];
}

/** "group data-eng, user jane@x.com, service principal 1234…": for doctor's line. */
export function describePrincipals(list: string[]): string {
  const word: Record<PrincipalKind, string> = {
    user_name: "user",
    service_principal_name: "service principal",
    group_name: "group",
  };
  return list.map((p) => `${word[principalKind(p)]} ${p}`).join(", ");
}
