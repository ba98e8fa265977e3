import { randomBytes, randomUUID } from "node:crypto";

export interface LocalUser {
  /** Databricks user id (numeric string), used in X-Forwarded-User as `<id>@<workspace id>`. */
  id: string;
  email: string;
  /** What the person typed as their name (X-Forwarded-Preferred-Username). */
  name: string;
}

export const DEFAULT_LOCAL_USER = { email: "local-user@example.com", name: "Local User" };

/** The stand-in workspace's users: whoever signs in at its login page becomes one (no password, as locally nothing is protected). */
export class LocalUsers {
  private readonly byEmail = new Map<string, LocalUser>();
  private nextId = 1000;

  constructor() {
    this.add(DEFAULT_LOCAL_USER.email, DEFAULT_LOCAL_USER.name);
  }

  /** `id`: a user kept from an earlier run keeps its id (X-Forwarded-User names it). */
  add(email: string, name: string, id?: string): LocalUser {
    const key = email.trim().toLowerCase();
    const existing = this.byEmail.get(key);
    const user = {
      id: existing?.id ?? id ?? this.newId(),
      email: key,
      name: name.trim() || key,
    };
    this.byEmail.set(key, user);
    return user;
  }

  private newId(): string {
    const taken = new Set([...this.byEmail.values()].map((u) => u.id));
    while (taken.has(String(this.nextId))) this.nextId++;
    return String(this.nextId++);
  }

  get(email: string | undefined): LocalUser | undefined {
    return email ? this.byEmail.get(email.trim().toLowerCase()) : undefined;
  }

  first(): LocalUser {
    return this.byEmail.values().next().value as LocalUser;
  }

  all(): LocalUser[] {
    return [...this.byEmail.values()];
  }
}

/** One-use authorization codes from the login page to the proxy's callback (60 s, as OAuth codes are short-lived). */
export class AuthCodes {
  private readonly codes = new Map<string, { email: string; redirectUri: string; expiresAt: number }>();
  issue(email: string, redirectUri: string): string {
    const code = randomBytes(18).toString("base64url");
    this.codes.set(code, { email, redirectUri, expiresAt: Date.now() + 60_000 });
    return code;
  }
  take(code: string | null, redirectUri: string): string | undefined {
    if (!code) return undefined;
    const c = this.codes.get(code);
    this.codes.delete(code);
    if (!c || c.expiresAt < Date.now() || c.redirectUri !== redirectUri) return undefined;
    return c.email;
  }
}

/**
 * The proxy's browser sessions (a cookie on the app's origin). Independent of OAuth token lifetimes: a
 * signed-in person keeps working across token expiry, as on Databricks.
 */
export interface SavedBrowserSession {
  id: string;
  email: string;
  expiresAt: number;
}

export class BrowserSessions {
  private readonly sessions = new Map<string, { email: string; expiresAt: number }>();
  /** `saved`/`onChange`: `local` keeps sessions across restarts of the same state (stand-in-state.ts). */
  constructor(
    readonly ttlMs = 24 * 3600_000,
    saved: SavedBrowserSession[] = [],
    private readonly onChange?: (sessions: SavedBrowserSession[]) => void,
  ) {
    const now = Date.now();
    for (const s of saved)
      if (s.expiresAt > now) this.sessions.set(s.id, { email: s.email, expiresAt: s.expiresAt });
  }
  create(email: string): string {
    const id = `${randomUUID()}.${randomBytes(16).toString("base64url")}`;
    const now = Date.now();
    for (const [k, s] of this.sessions) if (s.expiresAt < now) this.sessions.delete(k);
    this.sessions.set(id, { email, expiresAt: now + this.ttlMs });
    this.onChange?.([...this.sessions].map(([k, s]) => ({ id: k, ...s })));
    return id;
  }
  verify(id: string | undefined): string | undefined {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s || s.expiresAt < Date.now()) return undefined;
    return s.email;
  }
}
