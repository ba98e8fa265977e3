import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

/**
 * A MetaMCP-shaped git repository, generated (never upstream code), with the shapes the patches must
 * handle: a Drizzle schema with a multi-line import, aliased imports (`pgEnum as enumType`, a second
 * `pgTable as table` import), enums, foreign keys; drizzle-kit SQL migrations with `"public".` types and
 * FK references plus unqualified CREATE TABLEs; drizzle's journal; drizzle.config.ts; the database
 * connection in each form upstream has used (`DB_INDEX_FORMS`: v2.0.0 and v2.1.0 pass the URL to drizzle,
 * later versions build an explicit pg Pool).
 *
 * History (default branch `main` unless told otherwise):
 * ```
 * main:  v2.0.0 ─ v2.1.0 ─ v2.2.0 ─ (commit-only) ─ v2.3.0-test ─ (head)
 *                              └─ side line `docker-per-mcp`: v2.4.0 ─ v2.4.1-docker-per-mcp
 * ```
 * The newest stable release on the default branch is v2.2.0: v2.3.0-test is a pre-release, v2.4.0 is a
 * higher plain tag that is NOT on the default branch, v2.4.1-docker-per-mcp is suffixed. Table counts
 * differ per version (see `TABLE_COUNTS`).
 */
export interface SyntheticUpstreamOptions {
  /** Extra files (e.g. a buildable backend/frontend) merged into every version's tree; they win. */
  extraFiles?: (version: string) => Record<string, string>;
  defaultBranch?: string;
  /** Written to FORK.md in every version: tells a fork from upstream in tests. */
  marker?: string;
  /** Where to create it (default: a fresh temp dir; remove it with `cleanup`). */
  dir?: string;
  /** How each version's backend connects (default: `DB_INDEX_FORMS`, upstream's order). */
  dbIndexForm?: (version: string) => DbIndexForm | undefined;
  /** How each version's backend starts listening (default: `BACKEND_INDEX_FORMS`, upstream's order). */
  backendIndexForm?: (version: string) => BackendIndexForm | undefined;
  /** The shape of each version's auth.ts (default: `AUTH_FORMS`, upstream's order). */
  authForm?: (version: string) => AuthForm | undefined;
}

export interface SyntheticUpstream {
  /** What to pass as --repo (a local path). */
  url: string;
  /** The same repository as a file:// URL. */
  fileUrl: string;
  dir: string;
  defaultBranch: string;
  /** Tag name → commit SHA (peeled). */
  tags: Record<string, string>;
  commits: {
    /** A commit on the default branch that no tag or branch points at. */
    commitOnly: string;
    /** The default branch's head. */
    head: string;
    /** The side line's head. */
    sideHead: string;
  };
  /** The newest stable release on the default branch. */
  latestStable: string;
  cleanup(): void;
}

/** Drizzle tables per version: the patches must discover these, never assume them. */
export const TABLE_COUNTS: Record<string, { tables: number; enums: number }> = {
  "v2.0.0": { tables: 3, enums: 1 },
  "v2.1.0": { tables: 5, enums: 2 },
  "v2.2.0": { tables: 6, enums: 2 },
  "commit-only": { tables: 7, enums: 2 },
  "v2.3.0-test": { tables: 7, enums: 2 },
  head: { tables: 7, enums: 2 },
  "v2.4.0": { tables: 7, enums: 3 },
  "v2.4.1-docker-per-mcp": { tables: 7, enums: 3 },
};

export const SYNTHETIC_GIT_ENV = {
  GIT_AUTHOR_NAME: "Synthetic Upstream",
  GIT_AUTHOR_EMAIL: "synthetic@example.invalid",
  GIT_COMMITTER_NAME: "Synthetic Upstream",
  GIT_COMMITTER_EMAIL: "synthetic@example.invalid",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_TERMINAL_PROMPT: "0",
};

interface TableDef {
  name: string;
  constName: string;
  /** Drizzle columns (TS), `builder` is `table` or `pgTable` alias chosen per table. */
  ts: string;
  sql: string;
  /** `ALTER TABLE ... ADD CONSTRAINT ... REFERENCES "public"...` lines. */
  fks: string[];
  indexes?: string[];
}

interface EnumDef {
  name: string;
  constName: string;
  values: string[];
}

const ENUMS: EnumDef[] = [
  { name: "mcp_server_type", constName: "mcpServerTypeEnum", values: ["STDIO", "SSE", "STREAMABLE_HTTP"] },
  { name: "namespace_status", constName: "namespaceStatusEnum", values: ["ACTIVE", "INACTIVE"] },
  { name: "docker_session_status", constName: "dockerSessionStatusEnum", values: ["RUNNING", "STOPPED"] },
];

const fk = (table: string, column: string, target: string, targetColumn: string) =>
  `ALTER TABLE "${table}" ADD CONSTRAINT "${table}_${column}_${target}_${targetColumn}_fk" FOREIGN KEY ("${column}") REFERENCES "public"."${target}"("${targetColumn}") ON DELETE cascade ON UPDATE no action;`;

const TABLES: TableDef[] = [
  {
    name: "users",
    constName: "usersTable",
    ts: `{
  id: text("id").primaryKey(),
  email: text("email").notNull().unique(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
}`,
    sql: `CREATE TABLE "users" (
\t"id" text PRIMARY KEY NOT NULL,
\t"email" text NOT NULL,
\t"created_at" timestamp with time zone DEFAULT now() NOT NULL,
\tCONSTRAINT "users_email_unique" UNIQUE("email")
);`,
    fks: [],
  },
  {
    name: "mcp_servers",
    constName: "mcpServersTable",
    ts: `{
    uuid: uuid("uuid").primaryKey().defaultRandom(),
    name: text("name").notNull(),
    type: mcpServerTypeEnum("type").notNull().default("STDIO"),
    userId: text("user_id").references(() => usersTable.id, { onDelete: "cascade" }),
  },
  (t) => [index("mcp_servers_user_id_idx").on(t.userId)]`,
    sql: `CREATE TABLE "mcp_servers" (
\t"uuid" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
\t"name" text NOT NULL,
\t"type" "mcp_server_type" DEFAULT 'STDIO' NOT NULL,
\t"user_id" text
);`,
    fks: [fk("mcp_servers", "user_id", "users", "id")],
    indexes: [`CREATE INDEX "mcp_servers_user_id_idx" ON "mcp_servers" USING btree ("user_id");`],
  },
  {
    name: "tools",
    constName: "toolsTable",
    ts: `{
  uuid: uuid("uuid").primaryKey().defaultRandom(),
  name: text("name").notNull(),
  mcpServerUuid: uuid("mcp_server_uuid")
    .notNull()
    .references(() => mcpServersTable.uuid, { onDelete: "cascade" }),
}`,
    sql: `CREATE TABLE "tools" (
\t"uuid" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
\t"name" text NOT NULL,
\t"mcp_server_uuid" uuid NOT NULL
);`,
    fks: [fk("tools", "mcp_server_uuid", "mcp_servers", "uuid")],
  },
  {
    name: "namespaces",
    constName: "namespacesTable",
    ts: `{
  uuid: uuid("uuid").primaryKey().defaultRandom(),
  name: text("name").notNull(),
  status: namespaceStatusEnum("status").notNull().default("ACTIVE"),
}`,
    sql: `CREATE TABLE "namespaces" (
\t"uuid" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
\t"name" text NOT NULL,
\t"status" "namespace_status" DEFAULT 'ACTIVE' NOT NULL
);`,
    fks: [],
  },
  {
    name: "endpoints",
    constName: "endpointsTable",
    ts: `{
  uuid: uuid("uuid").primaryKey().defaultRandom(),
  name: text("name").notNull().unique(),
  namespaceUuid: uuid("namespace_uuid")
    .notNull()
    .references(() => namespacesTable.uuid, { onDelete: "cascade" }),
}`,
    sql: `CREATE TABLE "endpoints" (
\t"uuid" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
\t"name" text NOT NULL,
\t"namespace_uuid" uuid NOT NULL,
\tCONSTRAINT "endpoints_name_unique" UNIQUE("name")
);`,
    fks: [fk("endpoints", "namespace_uuid", "namespaces", "uuid")],
  },
  {
    name: "api_keys",
    constName: "apiKeysTable",
    ts: `{
  uuid: uuid("uuid").primaryKey().defaultRandom(),
  key: text("key").notNull().unique(),
  userId: text("user_id")
    .notNull()
    .references(() => usersTable.id, { onDelete: "cascade" }),
  isActive: boolean("is_active").notNull().default(true),
}`,
    sql: `CREATE TABLE "api_keys" (
\t"uuid" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
\t"key" text NOT NULL,
\t"user_id" text NOT NULL,
\t"is_active" boolean DEFAULT true NOT NULL,
\tCONSTRAINT "api_keys_key_unique" UNIQUE("key")
);`,
    fks: [fk("api_keys", "user_id", "users", "id")],
  },
  {
    name: "config",
    constName: "configTable",
    ts: `{ id: text("id").primaryKey(), value: text("value").notNull() }`,
    sql: `CREATE TABLE "config" (
\t"id" text PRIMARY KEY NOT NULL,
\t"value" text NOT NULL
);`,
    fks: [],
  },
];

/** The side line's extra table (uses the third enum). */
const DOCKER_TABLE: TableDef = {
  name: "docker_sessions",
  constName: "dockerSessionsTable",
  ts: `{
  uuid: uuid("uuid").primaryKey().defaultRandom(),
  status: dockerSessionStatusEnum("status").notNull(),
  mcpServerUuid: uuid("mcp_server_uuid").references(() => mcpServersTable.uuid),
}`,
  sql: `CREATE TABLE "docker_sessions" (
\t"uuid" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
\t"status" "public"."docker_session_status" NOT NULL,
\t"mcp_server_uuid" uuid
);`,
  fks: [
    `ALTER TABLE "docker_sessions" ADD CONSTRAINT "docker_sessions_mcp_server_uuid_mcp_servers_uuid_fk" FOREIGN KEY ("mcp_server_uuid") REFERENCES "public"."mcp_servers"("uuid") ON DELETE no action ON UPDATE no action;`,
  ],
};

interface VersionSpec {
  label: string;
  tables: TableDef[];
  enums: EnumDef[];
}

function schemaSource(spec: VersionSpec): string {
  const enums = spec.enums
    .map((e, i) =>
      i === 0
        ? // Multi-line call, like upstream's.
          `export const ${e.constName} = enumType(\n  "${e.name}",\n  [${e.values.map((v) => `"${v}"`).join(", ")}],\n);`
        : `export const ${e.constName} = enumType("${e.name}", [${e.values.map((v) => `"${v}"`).join(", ")}]);`,
    )
    .join("\n");
  const tables = spec.tables
    .map(
      (t, i) =>
        `export const ${t.constName} = ${i % 2 === 0 ? "pgTable" : "table"}(\n  "${t.name}",\n  ${t.ts},\n);`,
    )
    .join("\n\n");
  return `import { sql } from "drizzle-orm";
import {
  boolean,
  index,
  pgEnum as enumType,
  pgTable,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";
import { pgTable as table } from "drizzle-orm/pg-core";

// Synthetic MetaMCP-shaped schema, generated by test/support/synthetic-upstream.ts.
${enums}

${tables}

export const schemaVersion = sql\`select 1\`;
`;
}

interface Migration {
  tag: string;
  sql: string;
}

function migrationSql(tables: TableDef[], enums: EnumDef[]): string {
  const parts = [
    ...enums.map(
      (e) => `CREATE TYPE "public"."${e.name}" AS ENUM(${e.values.map((v) => `'${v}'`).join(", ")});`,
    ),
    ...tables.map((t) => `${t.sql}\n`),
    ...tables.flatMap((t) => t.fks),
    ...tables.flatMap((t) => t.indexes ?? []),
  ];
  return `${parts.join("--> statement-breakpoint\n")}`;
}

function journal(migrations: Migration[]): string {
  return `${JSON.stringify(
    {
      version: "7",
      dialect: "postgresql",
      entries: migrations.map((m, idx) => ({
        idx,
        version: "7",
        when: 1750000000000 + idx * 86_400_000,
        tag: m.tag,
        breakpoints: true,
      })),
    },
    null,
    2,
  )}\n`;
}

const DRIZZLE_CONFIG = `import { defineConfig } from "drizzle-kit";

export default defineConfig({
  out: "./drizzle",
  schema: "./src/db/schema.ts",
  dialect: "postgresql",
  dbCredentials: {
    url: process.env.DATABASE_URL!,
  },
});
`;

/**
 * The ways MetaMCP's `apps/backend/src/db/index.ts` has connected (shapes written here, never copied):
 * - `drizzle-url-dotenv`: `drizzle(process.env.DATABASE_URL, { schema })` after `import "dotenv/config"`
 *   (v2.0.0–v2.0.3);
 * - `drizzle-url`: the same without dotenv (v2.0.4–v2.4.5);
 * - `pool`: an explicit `new Pool({ connectionString: DATABASE_URL })` with an error handler (v2.4.6–v2.4.11,
 *   v2.5.x);
 * - `pool-ssl`: the same plus an optional CA certificate (v2.4.12 on, main);
 * - `unknown`: a form no release used (drizzle's `{ connection }` config): the patch must refuse it.
 */
export type DbIndexForm = "drizzle-url-dotenv" | "drizzle-url" | "pool" | "pool-ssl" | "unknown";

const DB_INDEX_GUARD = `if (!process.env.DATABASE_URL) {
  throw new Error("DATABASE_URL is not set");
}
`;

export function syntheticDbIndex(form: DbIndexForm): string {
  switch (form) {
    case "drizzle-url-dotenv":
    case "drizzle-url":
      return `${form === "drizzle-url-dotenv" ? 'import "dotenv/config";\n\n' : ""}import { drizzle } from "drizzle-orm/node-postgres";

import * as schema from "./schema";

${DB_INDEX_GUARD}
// drizzle opens its own pool from the URL.
export const db = drizzle(process.env.DATABASE_URL, { schema });
`;
    case "pool":
    case "pool-ssl":
      return `import { drizzle } from "drizzle-orm/node-postgres";
import { Pool } from "pg";

import * as schema from "./schema";

const { DATABASE_URL${form === "pool-ssl" ? ", POSTGRES_CA_CERT" : ""} } = process.env;

if (!DATABASE_URL) {
  throw new Error("DATABASE_URL is not set");
}

// One shared pool; errors on idle clients are logged, not fatal.
export const pool = new Pool({
  connectionString: DATABASE_URL,${
    form === "pool-ssl"
      ? `
  ...(POSTGRES_CA_CERT && {
    ssl: { ca: POSTGRES_CA_CERT, rejectUnauthorized: true },
  }),`
      : ""
  }
});

pool.on("error", (err) => {
  console.error("pool error", err);
});

export const db = drizzle(pool, { schema });
`;
    case "unknown":
      return `import { drizzle } from "drizzle-orm/node-postgres";

import * as schema from "./schema";

export const db = drizzle({ connection: { url: process.env.DATABASE_URL! }, schema });
`;
  }
}

/** The form each synthetic version uses, in upstream's order: the URL form first, then the explicit Pool. */
export const DB_INDEX_FORMS: Record<string, DbIndexForm> = {
  "v2.0.0": "drizzle-url-dotenv",
  "v2.1.0": "drizzle-url",
  "v2.2.0": "pool-ssl",
  "commit-only": "pool-ssl",
  "v2.3.0-test": "pool-ssl",
  head: "pool-ssl",
  "v2.4.0": "pool",
  "v2.4.1-docker-per-mcp": "pool",
};

/**
 * The ways MetaMCP's `apps/backend/src/index.ts` has started its server (shapes written here, never copied;
 * read from every stable tag and main, docs/prepare.md):
 * - `port-var`: `const PORT = process.env.PORT || 12009; app.listen(PORT, () => …)` (v2.0.0–v2.0.3);
 * - `port-literal`: `app.listen(12009, () => …)` (v2.0.4–v2.0.6);
 * - `async-callback`: `app.listen(12009, async () => …)` (v2.1.0–v2.5.3);
 * - `start-function`: the same inside `async function start()` after startup work (main past v2.4.22);
 * - `own-host`, `two-listeners`: forms no release used (a host of upstream's own; a second server): the
 *   patch must refuse them.
 * None passes a host: Node then listens on every interface.
 */
export type BackendIndexForm =
  | "port-var"
  | "port-literal"
  | "async-callback"
  | "start-function"
  | "own-host"
  | "two-listeners";

export function syntheticBackendIndex(form: BackendIndexForm): string {
  const v200 = form === "port-var";
  const port = v200 ? "PORT" : "12009";
  const callback = v200 || form === "port-literal" ? "() =>" : "async () =>";
  const host = form === "own-host" ? `"0.0.0.0", ` : "";
  // main (start-function) also has the OAuth metadata router and initializes before listening.
  const main = form === "start-function";
  const url = (route: string) =>
    v200 ? `http://localhost:\${PORT}${route}` : `http://localhost:12009${route}`;
  const listen = (indent: string) => `${indent}app.listen(${port}, ${host}${callback} {
${indent}  console.log(\`Server is running on port ${v200 ? `\${PORT}` : "12009"}\`);
${indent}  console.log(\`Auth routes available at: ${url("/api/auth")}\`);
${indent}  console.log(\`Public MetaMCP endpoints available at: ${url("/metamcp")}\`);
${
  callback === "async () =>"
    ? `${indent}  // Let the server settle before MCP servers connect back.
${indent}  await new Promise((resolve) => setTimeout(resolve, 3000)).then(
${indent}    initializeIdleServers,
${indent}  );
`
    : ""
}${indent}});
`;
  const imports = [
    v200 ? `import "dotenv/config";\n` : "",
    `import express from "express";\n`,
    form === "two-listeners" ? `import { createServer } from "node:http";\n` : "",
    `\nimport { auth } from "./auth";\n`,
    v200
      ? ""
      : `import { ${main ? "initializeIdleServers, initializeOnStartup" : "initializeIdleServers"} } from "./lib/startup";\n`,
    `import mcpProxyRouter from "./routers/mcp-proxy";\n`,
    main ? `import oauthRouter from "./routers/oauth";\n` : "",
    `import publicEndpointsRouter from "./routers/public-metamcp";\n`,
    `import trpcRouter from "./routers/trpc";\n`,
  ].join("");
  return `${imports}
const app = express();
${v200 ? "const PORT = process.env.PORT || 12009;\n" : ""}
// Global JSON middleware for non-proxy routes
app.use((req, res, next) => {
  if (req.path.startsWith("/mcp-proxy/") || req.path.startsWith("/metamcp/")) {
    // Skip JSON parsing for the MCP proxy and public endpoints: they read the raw stream
    next();
  } else {
    express.json({ limit: "50mb" })(req, res, next);
  }
});
${main ? "\n// OAuth metadata endpoints at the root, for .well-known discovery\napp.use(oauthRouter);\n" : ""}
// better-auth's routes, by calling its handler with a web Request
app.use(async (req, res, next) => {
  if (req.path.startsWith("/api/auth")) {
    const url = new URL(req.url, \`http://\${req.headers.host}\`);
    const response = await auth.handler(new Request(url.toString(), { method: req.method }));
    res.status(response.status);
    res.send(await response.text());
    return;
  }
  next();
});

// Public endpoints (before any JSON parsing: they read raw streams)
app.use("/metamcp", publicEndpointsRouter);

// MCP proxy routes
app.use("/mcp-proxy", mcpProxyRouter);

// tRPC routes
app.use("/trpc", trpcRouter);
${
  main
    ? `
async function start(): Promise<void> {
  // Startup work that must finish (database reachable, migrations applied) before the server listens
  await initializeOnStartup();

${listen("  ")}}

start().catch((err) => {
  console.error("Fatal startup error:", err);
});
`
    : `
${listen("")}`
}
app.get("/health", (req, res) => {
  res.json({
    status: "ok",
  });
});
${form === "two-listeners" ? `\ncreateServer(app).listen(12010);\n` : ""}`;
}

/**
 * What the backend entry imports besides express, as stand-ins that let it run (the loopback probe starts
 * it with tsx): relative to apps/backend/src.
 */
export const SYNTHETIC_BACKEND_IMPORTS: Record<string, string> = {
  "auth.ts": 'export const auth = { handler: async (_request: Request) => new Response("{}") };\n',
  "lib/startup.ts":
    "export async function initializeIdleServers(): Promise<void> {}\nexport async function initializeOnStartup(): Promise<void> {}\n",
  "routers/mcp-proxy.ts": 'import express from "express";\nexport default express.Router();\n',
  "routers/oauth.ts": 'import express from "express";\nexport default express.Router();\n',
  "routers/public-metamcp.ts": 'import express from "express";\nexport default express.Router();\n',
  "routers/trpc.ts": 'import express from "express";\nexport default express.Router();\n',
};

/** The listen form each synthetic version uses, in upstream's order. */
export const BACKEND_INDEX_FORMS: Record<string, BackendIndexForm> = {
  "v2.0.0": "port-var",
  "v2.1.0": "port-literal",
  "v2.2.0": "async-callback",
  "commit-only": "async-callback",
  "v2.3.0-test": "async-callback",
  head: "start-function",
  "v2.4.0": "async-callback",
  "v2.4.1-docker-per-mcp": "async-callback",
};

/**
 * How each version checks MCP clients (shapes written here, never copied; read from upstream's tags):
 * - `per-router` (v2.0.0–v2.1.1): each public router defines its own `authenticateApiKey`, no shared middleware;
 * - `api-key-auth` (v2.2.0–v2.3.8): `middleware/api-key-auth.middleware.ts`, API keys only;
 * - `api-key-oauth` (v2.4.0 on): `middleware/api-key-oauth.middleware.ts`, API keys and OAuth, 4 conditions.
 */
export type MiddlewareForm = "per-router" | "api-key-auth" | "api-key-oauth";

export const MIDDLEWARE_FORMS: Record<string, MiddlewareForm> = {
  "v2.0.0": "per-router",
  "v2.1.0": "per-router",
  "v2.2.0": "api-key-auth",
  "commit-only": "api-key-auth",
  "v2.3.0-test": "api-key-auth",
  head: "api-key-auth",
  "v2.4.0": "api-key-oauth",
  "v2.4.1-docker-per-mcp": "api-key-oauth",
};

const ACCESS_CHECK = `    const isPublicApiKey = validation.user_id === null;
    const isPrivateEndpoint = endpoint.user_id !== null;
    if (isPublicApiKey && isPrivateEndpoint) {
      return res.status(403).json({
        error: "Access denied",
        message: "Public API keys cannot access private endpoints. Use a private API key owned by the endpoint owner.",
        timestamp: new Date().toISOString(),
      });
    }
    if (!isPublicApiKey && isPrivateEndpoint && endpoint.user_id !== validation.user_id) {
      return res.status(403).json({
        error: "Access denied",
        message: "You can only access endpoints you own or public endpoints.",
        timestamp: new Date().toISOString(),
      });
    }`;

/** The backend's MCP-client checks in the given form: file name → content. */
export function syntheticMiddleware(form: MiddlewareForm): Record<string, string> {
  const header = `import { DatabaseEndpoint } from "@repo/zod-types";
import express from "express";

import { ApiKeysRepository } from "../db/repositories/api-keys.repo";
`;
  if (form === "per-router") {
    const router = (kind: string) => `import express from "express";

import { ApiKeysRepository } from "../../db/repositories/api-keys.repo";

interface AuthenticatedRequest extends express.Request {
  endpoint: { enable_api_key_auth: boolean; use_query_param_auth: boolean };
  apiKeyUserId?: string;
}

const ${kind}Router = express.Router();
const apiKeysRepository = new ApiKeysRepository();

// API Key authentication middleware
const authenticateApiKey = async (
  req: express.Request,
  res: express.Response,
  next: express.NextFunction,
) => {
  const authReq = req as AuthenticatedRequest;
  if (!authReq.endpoint?.enable_api_key_auth) {
    return next();
  }
  const authHeader = req.headers.authorization;
  const apiKey = authHeader?.startsWith("Bearer ") ? authHeader.substring(7) : (req.headers["x-api-key"] as string);
  const validation = await apiKeysRepository.validateApiKey(apiKey);
  if (!validation.valid) {
    return res.status(401).json({ error: "Invalid API key", message: "The provided API key is invalid or inactive" });
  }
  authReq.apiKeyUserId = validation.user_id;
  next();
};

export default ${kind}Router;
`;
    return {
      "apps/backend/src/routers/public-metamcp/streamable-http.ts": router("streamableHttp"),
      "apps/backend/src/routers/public-metamcp/sse.ts": router("sse"),
    };
  }
  if (form === "api-key-auth") {
    return {
      "apps/backend/src/middleware/api-key-auth.middleware.ts": `${header}
// Extend Express Request interface for our custom properties
export interface ApiKeyAuthenticatedRequest extends express.Request {
  namespaceUuid: string;
  endpointName: string;
  endpoint: DatabaseEndpoint;
  apiKeyUserId?: string;
  apiKeyUuid?: string;
}

const apiKeysRepository = new ApiKeysRepository();

/**
 * API Key authentication middleware with access control
 */
export const authenticateApiKey = async (
  req: express.Request,
  res: express.Response,
  next: express.NextFunction,
) => {
  const authReq = req as ApiKeyAuthenticatedRequest;
  const endpoint = authReq.endpoint;

  // Skip authentication if not enabled for this endpoint
  if (!endpoint?.enable_api_key_auth) {
    return next();
  }

  try {
    let apiKey: string | undefined;
    const authHeader = req.headers.authorization;
    if (authHeader && authHeader.startsWith("Bearer ")) {
      apiKey = authHeader.substring(7);
    } else {
      apiKey = req.headers["x-api-key"] as string;
    }
    if (!apiKey) {
      return res.status(401).json({
        error: "Authentication required",
        message: "API key required in one of: Authorization header (Bearer token), X-API-Key header",
        timestamp: new Date().toISOString(),
      });
    }
    const validation = await apiKeysRepository.validateApiKey(apiKey);
    if (!validation.valid) {
      return res.status(401).json({
        error: "Invalid API key",
        message: "The provided API key is invalid or inactive",
        timestamp: new Date().toISOString(),
      });
    }
    authReq.apiKeyUserId = validation.user_id || undefined;
    authReq.apiKeyUuid = validation.key_uuid;
${ACCESS_CHECK}
    next();
  } catch (error) {
    console.error("Error validating API key:", error);
    return res.status(500).json({ error: "Internal server error", message: "Failed to validate API key" });
  }
};
`,
    };
  }
  return {
    "apps/backend/src/middleware/api-key-oauth.middleware.ts": `${header}import {
  authRateLimiter,
  getAuthRateLimitIdentifier,
} from "../lib/auth-rate-limiter";

// Extend Express Request interface for our custom properties
export interface ApiKeyAuthenticatedRequest extends express.Request {
  namespaceUuid: string;
  endpointName: string;
  endpoint: DatabaseEndpoint;
  apiKeyUserId?: string;
  apiKeyUuid?: string;
  oauthUserId?: string; // For OAuth-authenticated requests
  authMethod?: "api_key" | "oauth"; // Track which auth method was used
}

const apiKeysRepository = new ApiKeysRepository();

function extractAuthToken(req: express.Request, endpoint: DatabaseEndpoint) {
  const apiKeyHeader = req.headers["x-api-key"] as string;
  if (apiKeyHeader) return { token: apiKeyHeader, source: "x-api-key" };
  const authHeader = req.headers.authorization;
  if (authHeader && authHeader.startsWith("Bearer ")) return { token: authHeader.substring(7), source: "authorization" };
  if (endpoint.enable_api_key_auth && endpoint.use_query_param_auth) {
    const queryApiKey = (req.query.api_key as string) || (req.query.apikey as string);
    if (queryApiKey) return { token: queryApiKey, source: "query" };
  }
  return { source: "none" };
}

/**
 * Enhanced authentication middleware organized by 4 clear conditions
 */
export const authenticateApiKey = async (
  req: express.Request,
  res: express.Response,
  next: express.NextFunction,
) => {
  const authReq = req as ApiKeyAuthenticatedRequest;
  const endpoint = authReq.endpoint;

  // Extract token information
  const { token } = extractAuthToken(req, endpoint);

  // ===== CONDITION 1: Both API key and OAuth OFF =====
  if (!endpoint?.enable_api_key_auth && !endpoint?.enable_oauth) {
    return next(); // Pass through without authentication
  }

  try {
    // ===== CONDITION 2: API key ON, OAuth OFF =====
    if (endpoint.enable_api_key_auth && !endpoint.enable_oauth) {
      if (!token) {
        return res.status(401).json({
          error: "authentication_required",
          error_description: "Authentication required via API key",
          timestamp: new Date().toISOString(),
        });
      }
      const validation = await apiKeysRepository.validateApiKey(token);
      if (validation?.valid) {
        authReq.apiKeyUserId = validation.user_id || undefined;
        authReq.apiKeyUuid = validation.key_uuid;
        authReq.authMethod = "api_key";
${ACCESS_CHECK}
        return next();
      }
      authRateLimiter.recordFailedAttempt(getAuthRateLimitIdentifier(req, endpoint));
      return res.status(401).json({
        error: "invalid_api_key",
        error_description: "The provided API key is invalid or expired",
        timestamp: new Date().toISOString(),
      });
    }
    // ===== CONDITIONS 3 and 4: OAuth ON =====
    return res.status(401).json({ error: "authentication_required", timestamp: new Date().toISOString() });
  } catch (error) {
    console.error("Error in authentication middleware:", error);
    return res.status(500).json({
      error: "Internal server error",
      message: "Failed to validate authentication",
      timestamp: new Date().toISOString(),
    });
  }
};
`,
  };
}

/**
 * The shapes of MetaMCP's `apps/backend/src/auth.ts` (written here from reading each tag, never copied):
 * - `no-plugins` (v2.0.0–v2.1.1): no `plugins` option; the sign-up hook takes only `user` and one switch
 *   (DISABLE_SIGNUP) refuses every new user;
 * - `plugins` (v2.2.0–v2.4.13, v2.5.x): `plugins: [...(oidc ? [genericOAuth(...)] : [])]`, same hook;
 * - `sso-hook` (v2.4.14 on): the hook tells SSO sign-ups (a path with `/callback/`) from email/password ones;
 * - `unknown`: `auth` built some other way (drift).
 */
export type AuthForm = "no-plugins" | "plugins" | "sso-hook" | "unknown";

export const AUTH_FORMS: Record<string, AuthForm> = {
  "v2.0.0": "no-plugins",
  "v2.1.0": "no-plugins",
  "v2.2.0": "plugins",
  "v2.4.0": "plugins",
  "v2.4.1-docker-per-mcp": "plugins",
};

export function syntheticAuth(form: AuthForm): string {
  const head = `import { betterAuth } from "better-auth";
import { drizzleAdapter } from "better-auth/adapters/drizzle";
${form === "no-plugins" ? "" : 'import { genericOAuth, GenericOAuthConfig } from "better-auth/plugins";\n'}
import { db } from "./db/index";
import * as schema from "./db/schema";
import { configService } from "./lib/config.service";

const oidcProviders${form === "no-plugins" ? "" : ": GenericOAuthConfig[]"} = [];
`;
  const hook =
    form === "sso-hook"
      ? `before: async (user, context) => {
          const isSignupDisabled = await configService.isSignupDisabled();
          const isSsoSignupDisabled = await configService.isSsoSignupDisabled();
          const isSso = context?.path?.includes("/callback/") || context?.path?.includes("/oauth/");
          if (isSso ? isSsoSignupDisabled : isSignupDisabled) {
            throw new Error(isSso ? "New user registration via SSO/OAuth is currently disabled." : "New user registration is currently disabled.");
          }
          return { data: user };
        }`
      : `before: async (user) => {
          if (await configService.isSignupDisabled()) {
            throw new Error("New user registration is currently disabled.");
          }
          return { data: user };
        }`;
  const plugins =
    form === "no-plugins"
      ? ""
      : `  plugins: [
    // OIDC when configured
    ...(oidcProviders.length > 0 ? [genericOAuth({ config: oidcProviders })] : []),
  ],
`;
  const options = `{
  secret: process.env.BETTER_AUTH_SECRET,
  baseURL: process.env.APP_URL,
  database: drizzleAdapter(db, { provider: "pg", schema: { user: schema.usersTable } }),
${plugins}  emailAndPassword: { enabled: true },
  databaseHooks: {
    user: {
      create: {
        ${hook},
      },
    },
  },
}`;
  const body =
    form === "unknown"
      ? `const options = ${options};\nexport const auth = betterAuth(options);\n`
      : `export const auth = betterAuth(${options});\n`;
  return `${head}\n${body}\nexport type Session = typeof auth.$Infer.Session;\n`;
}

/**
 * How each version lets people add servers and start processes (shapes written here, never copied; read from
 * upstream's tags `trpc/mcp-servers.impl.ts`, `routers/mcp-proxy/server.ts`, `lib/metamcp/utils.ts`):
 * - `v2.0` (v2.0.0–v2.1.1): `mcpServersImplementations.{create, bulkImport, update}` take only `input`; the
 *   inspector router hands a STDIO child `{ ...process.env, ... }`; no `${NAME}` expansion;
 * - `v2.2` (v2.2.0–v2.4.12): the implementations take `(input, userId)`;
 * - `v2.4.13` (v2.4.13–v2.4.22, main): `resolveEnvVariables` in utils.ts expands `${NAME}` from
 *   `process.env`, used by the inspector (three spreads of `process.env` there);
 * - `v2.5` (v2.5.x): `(input, userId)`, no expansion, the inspector reads no `process.env`.
 */
export type ServersForm = "v2.0" | "v2.2" | "v2.4.13" | "v2.5";

export const SERVERS_FORMS: Record<string, ServersForm> = {
  "v2.0.0": "v2.0",
  "v2.1.0": "v2.0",
  "v2.2.0": "v2.2",
  "commit-only": "v2.4.13",
  "v2.3.0-test": "v2.4.13",
  head: "v2.4.13",
  "v2.4.0": "v2.5",
  "v2.4.1-docker-per-mcp": "v2.5",
};

export const SERVERS_IMPL_FILE = "apps/backend/src/trpc/mcp-servers.impl.ts";
export const MCP_PROXY_SERVER_FILE = "apps/backend/src/routers/mcp-proxy/server.ts";
export const METAMCP_UTILS_FILE = "apps/backend/src/lib/metamcp/utils.ts";

/** The backend's server implementations, inspector router and utils in the given form: file → content. */
export function syntheticServers(form: ServersForm): Record<string, string> {
  const caller = form === "v2.0" ? "" : "\n    userId: string,";
  const owner = form === "v2.0" ? "" : "\n        user_id: userId,";
  const impl = `import type {
  BulkImportMcpServersRequestSchema,
  CreateMcpServerRequestSchema,
  UpdateMcpServerRequestSchema,
} from "@repo/zod-types";
import type { z } from "zod";

import { mcpServersRepository } from "../db/repositories";

export const mcpServersImplementations = {
  create: async (
    input: z.infer<typeof CreateMcpServerRequestSchema>,${caller}
  ) => {
    try {
      const createdServer = await mcpServersRepository.create({
        ...input,${owner}
      });
      return { success: true as const, data: createdServer, message: "MCP server created successfully" };
    } catch (error) {
      return { success: false as const, message: error instanceof Error ? error.message : "Internal server error" };
    }
  },

  list: async () => {
    return { success: true as const, data: await mcpServersRepository.findAll() };
  },

  bulkImport: async (
    input: z.infer<typeof BulkImportMcpServersRequestSchema>,${caller}
  ) => {
    try {
      const serversToInsert = [];
      for (const [serverName, serverConfig] of Object.entries(input.mcpServers)) {
        serversToInsert.push({
          name: serverName,
          type: serverConfig.type || ("STDIO" as const),
          command: serverConfig.command || null,
          args: serverConfig.args || [],
          env: serverConfig.env || {},
          url: serverConfig.url || null,${owner}
        });
      }
      if (serversToInsert.length > 0) await mcpServersRepository.bulkCreate(serversToInsert);
      return { success: true as const, imported: serversToInsert.length, message: "imported" };
    } catch (error) {
      return { success: false as const, imported: 0, message: error instanceof Error ? error.message : "error" };
    }
  },

  update: async (
    input: z.infer<typeof UpdateMcpServerRequestSchema>,${caller}
  ) => {
    try {
      const updatedServer = await mcpServersRepository.update(input);
      return { success: true as const, data: updatedServer, message: "MCP server updated successfully" };
    } catch (error) {
      return { success: false as const, message: error instanceof Error ? error.message : "Internal server error" };
    }
  },
};
`;
  const resolve = form === "v2.4.13";
  const stdioEnv = (indent: string) =>
    form === "v2.5"
      ? `${indent}const env = { ...defaultEnvironment, ...queryEnv };`
      : resolve
        ? `${indent}const resolvedQueryEnv = resolveEnvVariables(queryEnv);\n${indent}const env = { ...process.env, ...defaultEnvironment, ...resolvedQueryEnv };`
        : `${indent}const env = { ...process.env, ...defaultEnvironment, ...queryEnv };`;
  const cooldown = resolve
    ? `
serverRouter.get("/stdio-cooldown", (req, res) => {
  const queryEnv = req.query.env ? JSON.parse(req.query.env as string) : {};
${stdioEnv("  ")}
  res.json({ keys: Object.keys(env).length });
});

serverRouter.get("/stdio-enoent", (req, res) => {
  const queryEnv = req.query.env ? JSON.parse(req.query.env as string) : {};
${stdioEnv("  ")}
  res.json({ keys: Object.keys(env).length });
});
`
    : "";
  const server = `import express from "express";

${resolve ? 'import { resolveEnvVariables } from "../../lib/metamcp/utils";\n' : ""}import { betterAuthMcpMiddleware } from "../../middleware/better-auth-mcp.middleware";

const defaultEnvironment = { PATH: "/usr/bin" };

const serverRouter = express.Router();

// Apply better auth middleware to all MCP proxy routes
serverRouter.use(betterAuthMcpMiddleware);

const createTransport = async (req: express.Request) => {
  const query = req.query;
  if (query.transportType === "STDIO") {
    const queryEnv = query.env ? JSON.parse(query.env as string) : {};
${stdioEnv("    ")}
    return { command: query.command as string, env };
  }
  throw new Error("Invalid transport type specified");
};

serverRouter.get("/stdio", async (req, res) => {
  try {
    res.json(await createTransport(req));
  } catch (error) {
    res.status(500).json(error);
  }
});
${cooldown}
export default serverRouter;
`;
  const utils = `export const DEFAULT_INHERITED_ENV_VARS = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"];

export function getDefaultEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of DEFAULT_INHERITED_ENV_VARS) {
    const value = process.env[key];
    if (value === undefined || value.startsWith("()")) continue;
    env[key] = value;
  }
  return env;
}
${
  resolve
    ? `
/**
 * Replaces values like "\${VAR_NAME}" with the backend's environment variable.
 */
export function resolveEnvVariables(
  envObject: Record<string, any>,
): Record<string, any> {
  const resolved: Record<string, any> = {};
  for (const [key, value] of Object.entries(envObject)) {
    if (typeof value === "string" && value.startsWith("\${") && value.endsWith("}")) {
      const varName = value.slice(2, -1);
      if (process.env[varName]) {
        resolved[key] = process.env[varName];
      } else {
        resolved[key] = value; // Keep original value if env var not found
        console.warn(\`Environment variable not found: \${varName}, keeping original value: \${value}\`);
      }
    } else {
      resolved[key] = value;
    }
  }
  return resolved;
}
`
    : ""
}`;
  return { [SERVERS_IMPL_FILE]: impl, [MCP_PROXY_SERVER_FILE]: server, [METAMCP_UTILS_FILE]: utils };
}

/**
 * `apps/frontend/next.config.js` as every release has it (v2.0.0 … main: an ES module, `const nextConfig`
 * with `output: "standalone"` first, rewrites to the backend, `export default nextConfig`); written here.
 */
export const SYNTHETIC_NEXT_CONFIG = `/** @type {import('next').NextConfig} */
const nextConfig = {
  output: "standalone",
  experimental: {
    proxyTimeout: 1000 * 120,
  },
  async rewrites() {
    return [{ source: "/trpc/:path*", destination: "http://localhost:12009/trpc/frontend/:path*" }];
  },
};

export default nextConfig;
`;

/**
 * The create-endpoint page's shape (written here, not upstream's): its path moved under `[locale]` in v2.3.0;
 * the form values carry `createMcpServer: true` (defaultValues and the resets: 2 before v2.4.0, 3 after) and
 * the checkbox sits in a `<div>` followed by an explanation `<p>`.
 */
export type EndpointsPageForm = "v2.0" | "v2.4";
export const ENDPOINTS_PAGE_FORMS: Record<string, EndpointsPageForm> = {
  "v2.0.0": "v2.0",
  "v2.1.0": "v2.0",
  "v2.2.0": "v2.0",
  // The side line branches off v2.2.0 (its files are written over v2.2.0's checkout): it keeps that page.
  "v2.4.0": "v2.0",
  "v2.4.1-docker-per-mcp": "v2.0",
};
export const ENDPOINTS_PAGE_PATHS: Record<EndpointsPageForm, string> = {
  "v2.0": "apps/frontend/app/(sidebar)/endpoints/page.tsx",
  "v2.4": "apps/frontend/app/[locale]/(sidebar)/endpoints/page.tsx",
};

export function syntheticEndpointsPage(form: EndpointsPageForm): Record<string, string> {
  const blank = `{
      name: "",
      enableApiKeyAuth: true,
      createMcpServer: true,
    }`;
  const label = form === "v2.0" ? "Make a server for this endpoint" : '{t("endpoints:makeServer")}';
  const page = `"use client";

import { useForm } from "react-hook-form";

import { Checkbox } from "@/components/ui/checkbox";

export default function EndpointsPage() {
  const form = useForm({
    defaultValues: ${blank},
  });
${
  form === "v2.4"
    ? `  const afterCreate = () => form.reset(${blank});
`
    : ""
}  const cancel = () => {
    form.reset(${blank});
  };
  const submit = (data: { name: string; createMcpServer: boolean }) =>
    console.log({ name: data.name, createMcpServer: data.createMcpServer });

  return (
    <form>
      <div className="flex items-center space-x-2">
        <Checkbox
          id="createMcpServer"
          checked={form.watch("createMcpServer")}
          onCheckedChange={(checked) => form.setValue("createMcpServer", checked as boolean)}
        />
        <label htmlFor="createMcpServer">${label}</label>
      </div>
      <p className="text-xs">It makes a server that points at this endpoint.</p>
      <button type="button" onClick={cancel}>Cancel</button>
      <button type="submit" onClick={form.handleSubmit(submit)}>Save</button>
${form === "v2.4" ? '      <button type="button" onClick={afterCreate}>Create</button>\n' : ""}    </form>
  );
}
`;
  return { [ENDPOINTS_PAGE_PATHS[form]]: page };
}

/** packages/zod-types' endpoint schemas as every release shapes them (written here). */
export const SYNTHETIC_ENDPOINTS_ZOD = `import { z } from "zod";

export const createEndpointFormSchema = z.object({
  name: z.string().min(1),
  createMcpServer: z.boolean(),
});

export const CreateEndpointRequestSchema = z.object({
  name: z.string().min(1),
  enableApiKeyAuth: z.boolean().default(true),
  createMcpServer: z.boolean().default(true),
  user_id: z.string().nullable().optional(),
});
`;

/**
 * How the frontend's `middleware.ts` checks a private page's session at the backend (shapes written here):
 * - `origin` (v2.0.0–v2.0.5): `betterFetch(…, { baseURL: request.nextUrl.origin })`, through Next's rewrites;
 * - `backend-url` (v2.0.6 to main): `baseURL: "http://localhost:12009"`, straight to the backend's fixed port.
 */
export type FrontendMiddlewareForm = "origin" | "backend-url";
export const FRONTEND_MIDDLEWARE_FORMS: Record<string, FrontendMiddlewareForm> = { "v2.0.0": "origin" };

export function syntheticFrontendMiddleware(form: FrontendMiddlewareForm): string {
  const baseURL = form === "origin" ? "request.nextUrl.origin" : '"http://localhost:12009"';
  return `import { betterFetch } from "@better-fetch/fetch";
import { type NextRequest, NextResponse } from "next/server";

export async function middleware(request: NextRequest) {
  if (request.nextUrl.pathname.startsWith("/login")) return NextResponse.next();
  const { data: session } = await betterFetch("/api/auth/get-session", {
    // the session lives at the backend, asked from inside the same container
    baseURL: ${baseURL},
    headers: { cookie: request.headers.get("cookie") || "" },
  });
  if (!session) return NextResponse.redirect(new URL("/login", request.url));
  return NextResponse.next();
}

export const config = { matcher: ["/((?!api|_next/static|_next/image|favicon.ico).*)"] };
`;
}

/** next.config.js as v2.0.0–v2.4.5 have it: no `experimental` at all (written here). */
export const SYNTHETIC_NEXT_CONFIG_NO_EXPERIMENTAL = SYNTHETIC_NEXT_CONFIG.replace(
  "  experimental: {\n    proxyTimeout: 1000 * 120,\n  },\n",
  "",
);

/** The files of one version (before extraFiles). */
export function syntheticVersionFiles(
  label: string,
  migrations: Migration[],
  spec: VersionSpec,
  marker?: string,
  dbIndexForm: DbIndexForm = DB_INDEX_FORMS[label] ?? "pool-ssl",
  backendIndexForm: BackendIndexForm = BACKEND_INDEX_FORMS[label] ?? "async-callback",
  authForm: AuthForm = AUTH_FORMS[label] ?? "sso-hook",
  middlewareForm: MiddlewareForm = MIDDLEWARE_FORMS[label] ?? "api-key-oauth",
  serversForm: ServersForm = SERVERS_FORMS[label] ?? "v2.4.13",
): Record<string, string> {
  const files: Record<string, string> = {
    "package.json": `${JSON.stringify(
      { name: "metamcp", private: true, version: label.replace(/^v/, ""), packageManager: "pnpm@9.0.0" },
      null,
      2,
    )}\n`,
    "README.md": `# MetaMCP (synthetic) ${label}\n`,
    "apps/backend/package.json": `${JSON.stringify({ name: "backend", type: "module", version: "1.0.0" }, null, 2)}\n`,
    "apps/backend/src/db/schema.ts": schemaSource(spec),
    "apps/backend/src/db/index.ts": syntheticDbIndex(dbIndexForm),
    "apps/backend/src/index.ts": syntheticBackendIndex(backendIndexForm),
    "apps/backend/src/auth.ts": syntheticAuth(authForm),
    "apps/backend/drizzle.config.ts": DRIZZLE_CONFIG,
    "apps/frontend/next.config.js": SYNTHETIC_NEXT_CONFIG,
    "apps/frontend/middleware.ts": syntheticFrontendMiddleware(
      FRONTEND_MIDDLEWARE_FORMS[label] ?? "backend-url",
    ),
    ...syntheticEndpointsPage(ENDPOINTS_PAGE_FORMS[label] ?? "v2.4"),
    "packages/zod-types/src/endpoints.zod.ts": SYNTHETIC_ENDPOINTS_ZOD,
    "apps/backend/drizzle/meta/_journal.json": journal(migrations),
    ...syntheticMiddleware(middlewareForm),
    ...syntheticServers(serversForm),
  };
  for (const m of migrations) files[`apps/backend/drizzle/${m.tag}.sql`] = m.sql;
  if (marker) files["FORK.md"] = `${marker}\n`;
  return files;
}

export function createSyntheticUpstream(options: SyntheticUpstreamOptions = {}): SyntheticUpstream {
  const dir = options.dir ?? mkdtempSync(path.join(os.tmpdir(), "mmdb-upstream-"));
  mkdirSync(dir, { recursive: true });
  const defaultBranch = options.defaultBranch ?? "main";
  let clock = 1_750_000_000;
  const git = (...args: string[]): string => {
    clock += 3600;
    return execFileSync("git", args, {
      cwd: dir,
      encoding: "utf8",
      env: {
        ...process.env,
        ...SYNTHETIC_GIT_ENV,
        GIT_AUTHOR_DATE: `${clock} +0000`,
        GIT_COMMITTER_DATE: `${clock} +0000`,
      },
    }).trim();
  };

  git("init", "--quiet", `--initial-branch=${defaultBranch}`);
  git("config", "commit.gpgsign", "false");
  git("config", "tag.gpgsign", "false");

  let written = new Set<string>();
  const commit = (label: string, migrations: Migration[], spec: VersionSpec): string => {
    const files = {
      ...syntheticVersionFiles(
        label,
        migrations,
        spec,
        options.marker,
        options.dbIndexForm?.(label),
        options.backendIndexForm?.(label),
        options.authForm?.(label),
      ),
      ...options.extraFiles?.(label),
    };
    for (const old of written) if (!(old in files)) rmSync(path.join(dir, old), { force: true });
    for (const [rel, content] of Object.entries(files)) {
      const file = path.join(dir, rel);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, content);
    }
    written = new Set(Object.keys(files));
    git("add", "--all");
    git("commit", "--quiet", "--allow-empty", "-m", `MetaMCP ${label}`);
    return git("rev-parse", "HEAD");
  };

  const spec = (count: number, enums: number, extra: TableDef[] = []): VersionSpec => ({
    label: "",
    tables: [...TABLES.slice(0, count - extra.length), ...extra],
    enums: ENUMS.slice(0, enums),
  });

  const m0: Migration = { tag: "0000_first_steps", sql: migrationSql(TABLES.slice(0, 3), ENUMS.slice(0, 1)) };
  const m1: Migration = { tag: "0001_namespaces", sql: migrationSql(TABLES.slice(3, 5), ENUMS.slice(1, 2)) };
  const m2: Migration = { tag: "0002_api_keys", sql: migrationSql(TABLES.slice(5, 6), []) };
  const m3: Migration = { tag: "0003_config", sql: migrationSql(TABLES.slice(6, 7), []) };
  const m3side: Migration = {
    tag: "0003_docker_sessions",
    sql: migrationSql([DOCKER_TABLE], ENUMS.slice(2, 3)),
  };

  const tags: Record<string, string> = {};
  tags["v2.0.0"] = commit("v2.0.0", [m0], spec(3, 1));
  git("tag", "-a", "-m", "v2.0.0", "v2.0.0");
  tags["v2.1.0"] = commit("v2.1.0", [m0, m1], spec(5, 2));
  git("tag", "v2.1.0");
  tags["v2.2.0"] = commit("v2.2.0", [m0, m1, m2], spec(6, 2));
  git("tag", "-a", "-m", "v2.2.0", "v2.2.0");
  const commitOnly = commit("commit-only", [m0, m1, m2, m3], spec(7, 2));
  tags["v2.3.0-test"] = commit("v2.3.0-test", [m0, m1, m2, m3], spec(7, 2));
  git("tag", "v2.3.0-test");
  const head = commit("head", [m0, m1, m2, m3], spec(7, 2));

  git("checkout", "--quiet", "-b", "docker-per-mcp", tags["v2.2.0"]);
  tags["v2.4.0"] = commit("v2.4.0", [m0, m1, m2, m3side], spec(7, 3, [DOCKER_TABLE]));
  git("tag", "-a", "-m", "v2.4.0", "v2.4.0");
  tags["v2.4.1-docker-per-mcp"] = commit(
    "v2.4.1-docker-per-mcp",
    [m0, m1, m2, m3side],
    spec(7, 3, [DOCKER_TABLE]),
  );
  git("tag", "v2.4.1-docker-per-mcp");
  const sideHead = tags["v2.4.1-docker-per-mcp"];
  git("checkout", "--quiet", defaultBranch);

  return {
    url: dir,
    fileUrl: `file://${dir}`,
    dir,
    defaultBranch,
    tags,
    commits: { commitOnly, head, sideHead },
    latestStable: "v2.2.0",
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Adds one commit on the default branch (e.g. to show that a later prepare fetches it). */
export function addUpstreamCommit(
  upstream: SyntheticUpstream,
  files: Record<string, string>,
  message: string,
): string {
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(upstream.dir, rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, content);
  }
  const run = (...args: string[]) =>
    execFileSync("git", args, {
      cwd: upstream.dir,
      encoding: "utf8",
      env: { ...process.env, ...SYNTHETIC_GIT_ENV },
    }).trim();
  run("add", "--all");
  run("commit", "--quiet", "-m", message);
  return run("rev-parse", "HEAD");
}
