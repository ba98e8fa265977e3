import { principalKind, principalList } from "../../databricks/access.js";

/**
 * Who the stand-in Apps proxy lets through, as the app's permissions decide on Databricks: only principals
 * granted CAN USE or CAN MANAGE reach an app ("Only people with access can use": learn.microsoft.com,
 * Azure Databricks, databricks-apps/permissions, "Organization permissions"); a signed-in person without
 * either is refused by the proxy and never reaches the app. The entries are APP_CAN_USE and APP_CAN_MANAGE,
 * read as access.ts reads them:
 * - a user (email) by email, case-insensitively;
 * - a service principal (application id) by the subject of its token;
 * - the group `users` is every workspace user; the stand-in has no other groups, so another group admits
 *   nobody here (on Databricks its members);
 * - the deployer (the default local user) always: the CLI makes the deploying user CAN_MANAGE
 *   (bundle/config/mutator/resourcemutator/fix_permissions.go).
 * With neither set, every local user may (the local default; on Databricks only the deployer could).
 */
export interface AppUsePolicy {
  /** True when this person or principal may open the app. */
  mayUse(who: { email: string; id?: string }): boolean;
}

export function appUsePolicy(
  canUse: string | undefined,
  canManage: string | undefined,
  deployerEmail: string,
): AppUsePolicy {
  const entries = [...principalList(canManage), ...principalList(canUse)];
  if (entries.length === 0) return { mayUse: () => true };
  const users = new Set(entries.filter((e) => principalKind(e) === "user_name").map((e) => e.toLowerCase()));
  const principals = new Set(entries.filter((e) => principalKind(e) === "service_principal_name"));
  const everyone = entries.some((e) => principalKind(e) === "group_name" && e === "users");
  const deployer = deployerEmail.toLowerCase();
  return {
    mayUse(who) {
      const email = who.email.toLowerCase();
      return everyone || email === deployer || users.has(email) || principals.has(who.email);
    },
  };
}
