import { drift, editFile, type Patch, type PatchContext, requireFile, withSourceFile } from "./patch.js";
import {
  applyTextEdits,
  forget,
  parseTypeScript,
  propertyName,
  setPropertyEdits,
  syntaxErrors,
  type TextEdit,
} from "./text-edits.js";
import { Node, type ObjectLiteralExpression, type SourceFile } from "./ts-morph.js";

/**
 * drizzle-kit's config: `schemaFilter: ["<schema>"]` (it only looks at our schema) and
 * `migrations: { schema: "<schema>" }` (its journal table, `__drizzle_migrations`, outside `public`).
 */
export const DRIZZLE_CONFIG_PATCH_ID = "drizzle-config";
export const DRIZZLE_CONFIG_FILE = "apps/backend/drizzle.config.ts";

/** Strips `(…)`, `as X`, `satisfies X`, `defineConfig(…)` down to the object literal. */
function unwrapConfigObject(node: Node | undefined, sf: SourceFile): ObjectLiteralExpression | undefined {
  for (let n = node, depth = 0; n && depth < 8; depth++) {
    if (Node.isObjectLiteralExpression(n)) return n;
    if (Node.isParenthesizedExpression(n) || Node.isAsExpression(n) || Node.isSatisfiesExpression(n)) {
      n = n.getExpression();
    } else if (Node.isCallExpression(n)) {
      n = n.getArguments()[0];
    } else if (Node.isIdentifier(n)) {
      n = sf.getVariableDeclaration(n.getText())?.getInitializer();
    } else {
      return undefined;
    }
  }
  return undefined;
}

export function findConfigObject(sf: SourceFile): ObjectLiteralExpression | undefined {
  const assignment = sf.getExportAssignment((e) => !e.isExportEquals());
  return unwrapConfigObject(assignment?.getExpression(), sf);
}

const EXPECTATION = "`export default defineConfig({ ... })` (or an object literal) as drizzle-kit's config";

export function patchDrizzleConfigText(
  file: string,
  text: string,
  ctx: PatchContext,
  patchId = DRIZZLE_CONFIG_PATCH_ID,
) {
  return withSourceFile(file, text, (sf) => {
    const config = findConfigObject(sf);
    if (!config) throw drift(patchId, file, EXPECTATION, ctx);
    const schema = JSON.stringify(ctx.schema);
    const edits: TextEdit[] = [];
    let changed = 0;
    const set = (r: { edits: TextEdit[]; changed: number }) => {
      edits.push(...r.edits);
      changed += r.changed;
    };
    const migrations = config.getProperties().find((p) => propertyName(p) === "migrations");
    if (migrations) {
      const value = Node.isPropertyAssignment(migrations) ? migrations.getInitializer() : undefined;
      if (!value || !Node.isObjectLiteralExpression(value)) {
        throw drift(
          patchId,
          file,
          "`migrations` to be an object literal (drizzle-kit's migrations options)",
          ctx,
        );
      }
      set(setPropertyEdits(config, [{ name: "schemaFilter", valueText: `[${schema}]` }]));
      set(setPropertyEdits(value, [{ name: "schema", valueText: schema }]));
    } else {
      set(
        setPropertyEdits(config, [
          { name: "schemaFilter", valueText: `[${schema}]` },
          { name: "migrations", valueText: `{ schema: ${schema} }` },
        ]),
      );
    }
    return { text: applyTextEdits(text, edits), edits: changed };
  });
}

export const drizzleConfigPatch: Patch = {
  id: DRIZZLE_CONFIG_PATCH_ID,
  description: "drizzle-kit config: schemaFilter and the migrations journal table in the custom schema",
  apply(tree, ctx) {
    const { files } = editFile(tree, DRIZZLE_CONFIG_FILE, this.id, ctx, (text) =>
      patchDrizzleConfigText(DRIZZLE_CONFIG_FILE, text, ctx, this.id),
    );
    return { files };
  },
  verify(tree, ctx) {
    const file = DRIZZLE_CONFIG_FILE;
    const sf = parseTypeScript(file, requireFile(tree, file, this.id, ctx));
    try {
      const errors = syntaxErrors(sf);
      if (errors.length) throw drift(this.id, file, `valid TypeScript, got ${errors[0]}`, ctx);
      const config = findConfigObject(sf);
      if (!config) throw drift(this.id, file, EXPECTATION, ctx);
      const prop = (obj: ObjectLiteralExpression, name: string) => {
        const p = obj.getProperties().find((x) => propertyName(x) === name);
        return p && Node.isPropertyAssignment(p) ? p.getInitializer() : undefined;
      };
      const filter = prop(config, "schemaFilter");
      const filterValues =
        filter && Node.isArrayLiteralExpression(filter)
          ? filter.getElements().map((e) => (Node.isStringLiteral(e) ? e.getLiteralValue() : e.getText()))
          : [];
      if (filterValues.length !== 1 || filterValues[0] !== ctx.schema) {
        throw drift(
          this.id,
          file,
          `schemaFilter: [${JSON.stringify(ctx.schema)}], got ${filter?.getText() ?? "none"}`,
          ctx,
        );
      }
      const migrations = prop(config, "migrations");
      const journalSchema =
        migrations && Node.isObjectLiteralExpression(migrations) ? prop(migrations, "schema") : undefined;
      if (
        !journalSchema ||
        !Node.isStringLiteral(journalSchema) ||
        journalSchema.getLiteralValue() !== ctx.schema
      ) {
        throw drift(
          this.id,
          file,
          `migrations: { schema: ${JSON.stringify(ctx.schema)} }, got ${migrations?.getText() ?? "none"}`,
          ctx,
        );
      }
    } finally {
      forget(sf);
    }
  },
};
