import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DB_INDEX_FILE,
  KNOWN_FORMS,
  PASSWORD_FILE_VAR,
  patchDbPoolText,
  verifyDbPoolText,
} from "../../src/patches/db-pool-credentials.js";
import { type LakebaseLikePostgres, startLakebaseLikePostgres } from "../support/postgres.js";
import { type DbIndexForm, syntheticDbIndex } from "../support/synthetic-upstream.js";
import { driftOf, linkedPackageDir, PATCH_CTX, TSC } from "./helpers.js";

const ctx = PATCH_CTX;
const KNOWN: { form: DbIndexForm; patched: "pool" | "drizzle-url"; edits: number }[] = [
  { form: "drizzle-url-dotenv", patched: "drizzle-url", edits: 3 },
  { form: "drizzle-url", patched: "drizzle-url", edits: 3 },
  { form: "pool", patched: "pool", edits: 2 },
  { form: "pool-ssl", patched: "pool", edits: 2 },
];

describe("db-pool-credentials patch: every connection form upstream has used", () => {
  it.each(KNOWN)(
    "$form: patched through the syntax tree, verified, idempotent",
    ({ form, patched, edits }) => {
      const text = syntheticDbIndex(form);
      const out = patchDbPoolText(DB_INDEX_FILE, text, ctx);
      expect(out.form).toBe(patched);
      expect(out.edits).toBe(edits);
      expect(verifyDbPoolText(DB_INDEX_FILE, out.text, ctx)).toBe(patched);
      expect(out.text).toContain(`import { readFileSync as __metamcpReadFileSync } from "node:fs";`);
      // Without the variable the connection is upstream's, untouched.
      if (patched === "pool") {
        expect(out.text).toContain("{ connectionString: DATABASE_URL }");
        expect(out.text).toContain(`${PASSWORD_FILE_VAR}\n    ? { password: () =>`);
      } else {
        expect(out.text).toContain(`import { Pool as __MetamcpPool } from "pg";`);
        expect(out.text).toMatch(
          /new __MetamcpPool\(\{ password: \(\) => [^\n]+\}\)\.on\("error", [^\n]+\)\n {4}: process\.env\.DATABASE_URL, \{ schema \}\)/,
        );
      }
      if (form === "pool-ssl") expect(out.text).toContain("ssl: { ca: POSTGRES_CA_CERT");
      if (form === "drizzle-url-dotenv") expect(out.text).toContain('import "dotenv/config";');
      // Everything else is byte for byte upstream's: the text before and after the one connection site.
      const site =
        patched === "pool" ? "connectionString: DATABASE_URL," : "process.env.DATABASE_URL, { schema });";
      const at = text.lastIndexOf(site);
      const body = out.text.replace(/^import \{ (readFileSync|Pool) as __\w+ \} from "[^"]+";\n/gm, "");
      expect(body.startsWith(text.slice(0, at))).toBe(true);
      expect(body.endsWith(text.slice(at + site.length - (patched === "pool" ? 1 : 14)))).toBe(true);
      expect(patchDbPoolText(DB_INDEX_FILE, out.text, ctx)).toEqual({ text: out.text, edits: 0 });
    },
  );

  it("fails loudly (exit 3), naming the file and the forms it knows, on a form it doesn't know", () => {
    for (const text of [
      syntheticDbIndex("unknown"),
      "export const x = 1;\n",
      // Two connections: which one the backend uses is not ours to guess.
      `${syntheticDbIndex("pool")}\nexport const other = drizzle(process.env.DATABASE_URL, { schema });\n`,
    ]) {
      const err = driftOf(() => patchDbPoolText(DB_INDEX_FILE, text, ctx));
      expect(err.exitCode).toBe(3);
      expect(err.message).toContain(
        `upstream drift in ${DB_INDEX_FILE} (MetaMCP v9.9.9, patch db-pool-credentials)`,
      );
      expect(err.message).toContain(KNOWN_FORMS);
    }
    expect(
      driftOf(() =>
        patchDbPoolText(DB_INDEX_FILE, 'import { Pool } from "pg";\nnew Pool({ max: 1 });\n', ctx),
      ).message,
    ).toContain("`connectionString` in the `new Pool({ ... })` options");
  });

  it("verify refuses a tree where the connection does not read the password file", () => {
    for (const form of ["pool", "drizzle-url"] as const) {
      // Unpatched upstream, a patch whose import went missing, a patch that no longer parses.
      const patched = patchDbPoolText(DB_INDEX_FILE, syntheticDbIndex(form), ctx).text;
      expect(driftOf(() => verifyDbPoolText(DB_INDEX_FILE, syntheticDbIndex(form), ctx)).message).toContain(
        `patched to read ${PASSWORD_FILE_VAR}`,
      );
      expect(
        driftOf(() =>
          verifyDbPoolText(DB_INDEX_FILE, patched.replace(/^import \{ readFileSync.*\n/m, ""), ctx),
        ).message,
      ).toContain("the import import { readFileSync as __metamcpReadFileSync }");
      expect(
        driftOf(() =>
          verifyDbPoolText(DB_INDEX_FILE, patched.replace("export const db", "export const db ="), ctx),
        ).message,
      ).toContain("valid TypeScript");
    }
  });
});

/**
 * The patched file, run as the backend runs it (its own process, the runtime's environment), against a
 * PostgreSQL that enforces a Lakebase-like role whose password changes: every NEW connection must use the
 * password in the file at that moment, for each form.
 */
describe("the patched connection, run against a Lakebase-like PostgreSQL", () => {
  let server: LakebaseLikePostgres;
  beforeAll(async () => {
    server = await startLakebaseLikePostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });

  const PROBE = `import { sql } from "drizzle-orm";
import pg from "pg";
import { writeFileSync } from "node:fs";
import { db } from "./index";

// Hold one connection, rotate the password (role and file), then need a second, new connection.
const pool = db.$client;
const first = await pool.connect();
const who = await first.query("select current_user as u, current_setting('search_path') as p");
const admin = new pg.Client({ connectionString: process.env.PROBE_ADMIN_URL });
await admin.connect();
await admin.query(\`ALTER ROLE "\${process.env.PGUSER}" PASSWORD '\${process.env.PROBE_NEXT_PASSWORD}'\`);
await admin.end();
if (process.env.METAMCP_PG_PASSWORD_FILE) writeFileSync(process.env.METAMCP_PG_PASSWORD_FILE, process.env.PROBE_NEXT_PASSWORD + "\\n");
const second = await pool.connect();
const r = await db.execute(sql\`select 1 as one\`);
first.release();
second.release();
await pool.end();
console.log(JSON.stringify({ user: who.rows[0].u, searchPath: who.rows[0].p, rows: (r.rows ?? r).length, errorListeners: pool.listenerCount("error") }));
`;

  function backendDir(form: DbIndexForm): string {
    // Our own drizzle-orm, pg and dotenv stand in for the backend's (same packages, resolved from here).
    return linkedPackageDir("mmdb-dbpool-", {
      "src/db/index.ts": patchDbPoolText(DB_INDEX_FILE, syntheticDbIndex(form), ctx).text,
      "src/db/schema.ts": "export const nothing = 0;\n",
      "src/db/probe.ts": PROBE,
    });
  }

  async function probe(dir: string, env: Record<string, string>) {
    const r = await execa("node", ["--import", "tsx", "src/db/probe.ts"], {
      cwd: dir,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      extendEnv: false,
      reject: false,
      timeout: 60_000,
    });
    return {
      ...r,
      json: r.exitCode === 0 ? JSON.parse(String(r.stdout).trim().split("\n").pop()!) : undefined,
    };
  }

  it("the patched file of every form type-checks (strict) against drizzle-orm's and pg's types", async () => {
    const files: Record<string, string> = { "src/db/schema.ts": "export const nothing = 0;\n" };
    for (const { form } of KNOWN) {
      const text = syntheticDbIndex(form).replace('"./schema"', '"./schema.js"');
      files[`src/db/${form}.ts`] = patchDbPoolText(DB_INDEX_FILE, text, ctx).text;
    }
    const dir = linkedPackageDir("mmdb-dbpool-tsc-", files);
    const flags = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext"];
    const patched = KNOWN.map(({ form }) => `src/db/${form}.ts`);
    const r = await execa(
      "node",
      [TSC, ...flags, "--target", "es2022", "--skipLibCheck", "--types", "node", ...patched],
      {
        cwd: dir,
        reject: false,
      },
    );
    expect(r.exitCode, String(r.stdout)).toBe(0);
  });

  it.each(KNOWN)(
    "$form: a new connection after a rotation uses the file's new password",
    async ({ form }) => {
      const dir = backendDir(form);
      const passwordFile = path.join(dir, "pg-password");
      await server.setPassword("first-password-1", 600);
      writeFileSync(passwordFile, "first-password-1\n");
      const r = await probe(dir, {
        // As the runtime's child environment: a URL without a password, the PG* variables, the file.
        DATABASE_URL: `postgresql://${server.role}@${server.host}:${server.port}/${server.database}`,
        [PASSWORD_FILE_VAR]: passwordFile,
        PGHOST: server.host,
        PGPORT: String(server.port),
        PGDATABASE: server.database,
        PGUSER: server.role,
        PGOPTIONS: "-c search_path=metamcp_app,public",
        PROBE_ADMIN_URL: server.adminUrl(),
        PROBE_NEXT_PASSWORD: "second-password-2",
      });
      expect(r.exitCode, `${r.stderr}`).toBe(0);
      expect(r.json).toEqual({
        user: server.role,
        searchPath: "metamcp_app,public",
        rows: 1,
        errorListeners: 1,
      });
      expect(readFileSync(passwordFile, "utf8").trim()).toBe("second-password-2");
    },
  );

  it.each(KNOWN)(
    "$form: without the variable, the connection is upstream's (DATABASE_URL)",
    async ({ form }) => {
      const dir = backendDir(form);
      await server.setPassword("url-password-3", 600);
      const r = await probe(dir, {
        DATABASE_URL: server.roleUrl("url-password-3"),
        PGUSER: server.role,
        PROBE_ADMIN_URL: server.adminUrl(),
        PROBE_NEXT_PASSWORD: "url-password-3",
      });
      expect(r.exitCode, `${r.stderr}`).toBe(0);
      expect(r.json).toMatchObject({ user: server.role, rows: 1 });
    },
  );
});
