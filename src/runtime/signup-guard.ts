import type { ServerResponse } from "node:http";

/**
 * Email/password sign-up when the app has it off (`METAMCP_EMAIL_SIGNUP=off`, the default): the router
 * refuses better-auth's sign-up route itself, on every release. MetaMCP's own "disable sign-up" setting is
 * not enough: before v2.4.14 it is one switch for every new user, workspace identities included, so the
 * runtime leaves it alone there and the form stayed open (seen on v2.4.0 with better-auth 1.2.9). Nobody we
 * serve needs the route: our identity module creates workspace users through better-auth's adapter, in the
 * backend, never through this URL.
 *
 * The spellings better-auth answers under Express's case-insensitive `/api/auth/*` mount: any case, doubled
 * slashes, a trailing slash.
 */
export function isEmailSignUp(pathname: string): boolean {
  return /^\/api\/auth\/sign-up\/email\/?$/i.test(pathname.replace(/\/{2,}/g, "/"));
}

export const SIGNUP_OFF_MESSAGE =
  "Email/password sign-up is off on this app: you are signed in with your Databricks identity already (the app's METAMCP_EMAIL_SIGNUP setting)";

/** better-auth's error shape (`{ code, message }`), so MetaMCP's sign-up page shows the message. */
export function answerSignupOff(res: ServerResponse): void {
  res.writeHead(403, { "content-type": "application/json" });
  res.end(JSON.stringify({ code: "EMAIL_SIGNUP_DISABLED", message: SIGNUP_OFF_MESSAGE }));
}
