import type { ServerResponse } from "node:http";
import type { PlatformServer } from "./server.js";
import type { AuthCodes, LocalUsers } from "./users.js";

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

function page(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(html),
  });
  res.end(html);
}

function loginPage(users: LocalUsers, redirectUri: string, state: string, error?: string): string {
  const hidden = `<input type="hidden" name="redirect_uri" value="${escapeHtml(redirectUri)}"><input type="hidden" name="state" value="${escapeHtml(state)}">`;
  const known = users
    .all()
    .map(
      (u) =>
        `<form method="post" action="/login.html" class="known">${hidden}<input type="hidden" name="email" value="${escapeHtml(u.email)}"><input type="hidden" name="name" value="${escapeHtml(u.name)}"><button type="submit">Continue as ${escapeHtml(u.name)} &lt;${escapeHtml(u.email)}&gt;</button></form>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · local Databricks stand-in</title>
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=email]{width:100%;padding:.4rem}button{margin-top:1rem;padding:.5rem 1rem}.known button{width:100%;text-align:left}.err{color:#b00}</style></head>
<body><h1>Sign in</h1>
<p>Local Databricks stand-in: no password. Pick a local user or name a new one; the app sees who you are in X-Forwarded-Email, as on Databricks.</p>
${error ? `<p class="err" role="alert">${escapeHtml(error)}</p>` : ""}
${known}
<h2>Another user</h2>
<form method="post" action="/login.html">${hidden}
<label for="name">Name</label><input id="name" name="name" type="text" autocomplete="name" required>
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="email" required>
<button type="submit" id="sign-in">Sign in</button></form>
</body></html>`;
}

export interface LoginOptions {
  users: LocalUsers;
  codes: AuthCodes;
  /** Where a code may be sent: the Apps proxy's own callback URLs (no open redirect). */
  isAllowedRedirect: (uri: string) => boolean;
}

/**
 * The workspace's login page, as the Apps proxy sends a browser without a session there: a person picks or
 * names a local user (name and email, no password), and goes back to the app's `/.auth/callback` with a
 * one-use code, which the proxy turns into a session cookie on the app's origin.
 */
export function registerLogin(workspace: PlatformServer, options: LoginOptions): void {
  const { users, codes } = options;
  workspace.route("GET", "/login.html", ({ res, query }) => {
    const redirectUri = query.get("redirect_uri") ?? "";
    if (!options.isAllowedRedirect(redirectUri)) {
      page(res, 400, "<!doctype html><p>Unknown redirect_uri: open the app's URL to sign in.</p>");
      return;
    }
    page(res, 200, loginPage(users, redirectUri, query.get("state") ?? "/"));
  });
  workspace.route("POST", "/login.html", ({ res, body }) => {
    const form = (body ?? {}) as Record<string, string>;
    const redirectUri = form.redirect_uri ?? "";
    const state = form.state ?? "/";
    if (!options.isAllowedRedirect(redirectUri)) {
      page(res, 400, "<!doctype html><p>Unknown redirect_uri: open the app's URL to sign in.</p>");
      return;
    }
    const email = (form.email ?? "").trim();
    const name = (form.name ?? "").trim();
    if (!/^[^\s@]+@[^\s@]+$/.test(email) || !name) {
      page(res, 400, loginPage(users, redirectUri, state, "Enter a name and a valid email address."));
      return;
    }
    const user = users.add(email, name);
    const target = new URL(redirectUri);
    target.searchParams.set("code", codes.issue(user.email, redirectUri));
    target.searchParams.set("state", state);
    res.writeHead(302, { location: target.toString(), "cache-control": "no-store" });
    res.end();
  });
}
