import { randomBytes, randomUUID } from "node:crypto";
import { createSocket } from "node:dgram";
import { createRequire } from "node:module";

/**
 * Lakebase database credentials as the stand-in issues and honours them. On Lakebase each OAuth
 * credential is a password for the app's role until ITS OWN expiry (one hour), checked at login only;
 * issuing a new one does not end the earlier ones (docs/local.md cites the Databricks docs). A single
 * PostgreSQL role password cannot do that (one password per role: each renewal would lock out a
 * connection opened with the credential read a moment before), so PostgreSQL hands every login of the
 * role to this module through its own RADIUS authentication method (`delegateRoleLogins` in
 * ../postgres.ts): PostgreSQL speaks the wire protocol, asks the client for its password and refuses
 * with its own error; we only answer "is this an issued, unexpired credential for this role?".
 */
export interface IssuedCredential {
  token: string;
  expires: Date;
}

export class DatabaseCredentials {
  private readonly issued = new Map<string, { role: string; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  issue(role: string, ttlSeconds: number): IssuedCredential {
    const token = `lbc-${randomUUID()}`;
    const expiresAt = this.now() + ttlSeconds * 1000;
    this.issued.set(token, { role, expiresAt });
    return { token, expires: new Date(expiresAt) };
  }

  /** Whether `token` was issued for `role` and its own expiry has not passed. Expired ones are forgotten. */
  honours(role: string, token: string): boolean {
    const now = this.now();
    for (const [t, c] of this.issued) if (c.expiresAt <= now) this.issued.delete(t);
    return this.issued.get(token)?.role === role;
  }

  /** Ends a credential before its expiry (the stand-in's own probe login). */
  revoke(token: string): void {
    this.issued.delete(token);
  }
}

/** Where PostgreSQL asks whether a login's password is good (RADIUS over UDP, on loopback). */
export interface LoginCheckService {
  host: string;
  port: number;
  /** RADIUS shared secret: random per start, known only to this process and PostgreSQL's pg_hba.conf. */
  secret: string;
  close(): Promise<void>;
}

interface RadiusPacket {
  code: string;
  attributes: Record<string, unknown>;
}
interface RadiusLib {
  decode(args: { packet: Buffer; secret: string }): RadiusPacket;
  encode_response(args: { packet: RadiusPacket; code: string; secret: string }): Buffer;
}

/**
 * A RADIUS server on 127.0.0.1 (the `radius` package encodes and decodes packets, including the hidden
 * User-Password and the response authenticator PostgreSQL verifies) that accepts a login when `check`
 * says so. A packet that does not decode with the secret gets no answer (PostgreSQL then refuses the login).
 */
export async function startLoginCheckService(
  check: (user: string, password: string) => boolean,
  onAnswer?: (user: string, accepted: boolean) => void,
): Promise<LoginCheckService> {
  const radius = createRequire(import.meta.url)("radius") as RadiusLib;
  const secret = randomBytes(24).toString("hex");
  const host = "127.0.0.1";
  const socket = createSocket("udp4");
  socket.on("message", (msg, peer) => {
    let packet: RadiusPacket;
    try {
      packet = radius.decode({ packet: msg, secret });
    } catch {
      return;
    }
    if (packet.code !== "Access-Request") return;
    const user = String(packet.attributes["User-Name"] ?? "");
    const password = String(packet.attributes["User-Password"] ?? "");
    const accepted = user !== "" && password !== "" && check(user, password);
    onAnswer?.(user, accepted);
    const reply = radius.encode_response({
      packet,
      code: accepted ? "Access-Accept" : "Access-Reject",
      secret,
    });
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, host, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  // A send to a PostgreSQL backend that already gave up must not take the process down.
  socket.on("error", () => {});
  return {
    host,
    port: socket.address().port,
    secret,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
