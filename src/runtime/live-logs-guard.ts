import type { IncomingHttpHeaders } from "node:http";

/**
 * MetaMCP's "Live Logs" page (tRPC `frontend.logs.get` / `frontend.logs.clear`) reads ONE in-memory store for
 * the whole app: every STDIO server's stderr and MetaMCP's connection errors for every person's servers
 * (upstream `lib/metamcp/log-store.ts`, fed by `lib/metamcp/client.ts`), behind nothing but "signed in". In a
 * shared app that is other people's output (a server printing its config prints its token), so only the
 * app's managers, the people already trusted with what runs inside the app (docs/stdio-servers.md), may read
 * or clear it. The router sees every tRPC call of every release, so the rule lives here.
 */

/** The tRPC procedures a `/trpc/frontend/<a>,<b>?batch=1` call names (tRPC batches them comma-separated). */
export function trpcProcedures(backendPathname: string): string[] {
  const m = /^\/trpc\/frontend\/([^/]+)\/?$/i.exec(backendPathname);
  if (!m) return [];
  let segment = m[1]!;
  try {
    segment = decodeURIComponent(segment);
  } catch {
    // undecodable: tRPC will not find such a procedure either
  }
  return segment.split(",").map((p) => p.trim());
}

export const isLiveLogsProcedure = (p: string) => p.startsWith("frontend.logs.");

export interface Managers {
  emails: readonly string[];
  principals: readonly string[];
}

/** Whether the (already trusted) identity on these headers is one of the app's managers. */
export function isManagerIdentity(headers: IncomingHttpHeaders, managers: Managers): boolean {
  const email = String(headers["x-forwarded-email"] ?? "")
    .trim()
    .toLowerCase();
  const user = String(headers["x-forwarded-user"] ?? "")
    .trim()
    .toLowerCase();
  if (email && managers.emails.includes(email)) return true;
  // A service principal: the proxy may name it by its application id, with or without a domain part.
  for (const id of [email, email.split("@")[0], user, user.split("@")[0]])
    if (id && managers.principals.includes(id)) return true;
  return false;
}

export const LIVE_LOGS_REFUSED =
  "Only the app's managers may read or clear MetaMCP's live logs: they hold every person's servers' output.";

/** tRPC's answer to a batch (or single) call refused with FORBIDDEN, one error per procedure. */
export function forbiddenTrpcAnswer(procedures: readonly string[], batch: boolean): string {
  const error = (path: string) => ({
    error: {
      message: LIVE_LOGS_REFUSED,
      code: -32003,
      data: { code: "FORBIDDEN", httpStatus: 403, path },
    },
  });
  return JSON.stringify(batch ? procedures.map(error) : error(procedures[0] ?? ""));
}
