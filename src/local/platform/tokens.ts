import { randomBytes } from "node:crypto";

export interface IssuedToken {
  token: string;
  subject: string;
  expiresAt: number;
  /**
   * The OAuth scopes the token was issued for: `all-apis` covers every API; a narrower one (`genie`,
   * `sql`, `unity-catalog`) only that API family (docs.databricks.com dev-tools/auth/oauth-m2m; the managed
   * MCP servers check them, managed-mcp.ts).
   */
  scopes: string[];
}

/**
 * OAuth access tokens issued by the stand-in, checked by its APIs and by the Apps proxy.
 * Tokens are opaque random strings, as Databricks' are to their holders.
 */
export class TokenStore {
  private readonly tokens = new Map<string, IssuedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  issue(subject: string, ttlSeconds: number, scopes: string[] = ["all-apis"]): IssuedToken {
    const issued = {
      token: `dapi-local-${randomBytes(24).toString("hex")}`,
      subject,
      expiresAt: this.now() + ttlSeconds * 1000,
      scopes,
    };
    this.tokens.set(issued.token, issued);
    return issued;
  }

  /** The token's subject when it is known and not expired. */
  verify(token: string | undefined): IssuedToken | undefined {
    if (!token) return undefined;
    const t = this.tokens.get(token);
    if (!t || t.expiresAt <= this.now()) return undefined;
    return t;
  }

  /** From an `Authorization: Bearer <token>` header. */
  verifyHeader(header: string | undefined): IssuedToken | undefined {
    const m = /^Bearer\s+(\S+)$/i.exec(header ?? "");
    return this.verify(m?.[1]);
  }
}
