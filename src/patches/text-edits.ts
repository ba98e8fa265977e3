import {
  createProject,
  Node,
  type ObjectLiteralExpression,
  type SourceFile,
  type TsDiagnostic,
  ts,
} from "./ts-morph.js";

/**
 * Patches find what to change in the syntax tree and change exactly those spans of text, so the rest of
 * the file (formatting, comments) stays byte for byte as upstream wrote it.
 */
export interface TextEdit {
  start: number;
  end: number;
  text: string;
}

/** Applies non-overlapping edits; insertions at the same position keep the order they were given in. */
export function applyTextEdits(text: string, edits: readonly TextEdit[]): string {
  const ordered = edits.map((e, i) => ({ e, i })).sort((a, b) => b.e.start - a.e.start || b.i - a.i);
  let out = text;
  let limit = Number.POSITIVE_INFINITY;
  for (const { e } of ordered) {
    if (e.end > limit) throw new Error(`overlapping text edits at ${e.start}-${e.end}`);
    out = out.slice(0, e.start) + e.text + out.slice(e.end);
    limit = e.start;
  }
  return out;
}

let project: ReturnType<typeof createProject> | undefined;

/** Parses TypeScript in memory (no disk, no type checking). Call `forget` when done with the file. */
export function parseTypeScript(fileName: string, text: string): SourceFile {
  project ??= createProject({
    useInMemoryFileSystem: true,
    skipAddingFilesFromTsConfig: true,
    compilerOptions: { target: ts.ScriptTarget.ES2022, noLib: true },
  });
  return project.createSourceFile(`/${fileName}`, text, { overwrite: true });
}

export function forget(sf: SourceFile): void {
  project?.removeSourceFile(sf);
}

/** Syntax errors in a parsed file (no type checking), formatted `line:col message`. */
export function syntaxErrors(sf: SourceFile): string[] {
  const diags = (sf.compilerNode as unknown as { parseDiagnostics?: TsDiagnostic[] }).parseDiagnostics ?? [];
  return diags.map((d) => {
    const pos = d.start !== undefined ? sf.getLineAndColumnAtPos(d.start) : { line: 0, column: 0 };
    return `${pos.line}:${pos.column} ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`;
  });
}

/** The name of a property assignment (`a:`, `"a":`), or undefined for spreads, methods, computed names. */
export function propertyName(node: Node): string | undefined {
  if (!Node.isPropertyAssignment(node) && !Node.isShorthandPropertyAssignment(node)) return undefined;
  const name = node.getNameNode();
  if (Node.isIdentifier(name)) return name.getText();
  if (Node.isStringLiteral(name)) return name.getLiteralValue();
  return undefined;
}

/** Indentation of the line `pos` is on. */
export function lineIndent(text: string, pos: number): string {
  const lineStart = text.lastIndexOf("\n", pos - 1) + 1;
  return /^[ \t]*/.exec(text.slice(lineStart))?.[0] ?? "";
}

/**
 * Edits that give `obj` the property `name: valueText`: replaces the value when the property exists with
 * another value, appends it otherwise (in the object's own style). No edit when it already holds.
 */
export function setPropertyEdits(
  obj: ObjectLiteralExpression,
  props: readonly { name: string; valueText: string }[],
): { edits: TextEdit[]; changed: number } {
  const edits = setPropertyTextEdits(obj, props);
  const changed = props.filter(({ name, valueText }) => {
    const p = obj.getProperties().find((x) => propertyName(x) === name);
    return !(p && Node.isPropertyAssignment(p) && p.getInitializer()?.getText() === valueText);
  }).length;
  return { edits, changed };
}

function setPropertyTextEdits(
  obj: ObjectLiteralExpression,
  props: readonly { name: string; valueText: string }[],
): TextEdit[] {
  const text = obj.getSourceFile().getFullText();
  const edits: TextEdit[] = [];
  const appended: string[] = [];
  for (const { name, valueText } of props) {
    const existing = obj.getProperties().find((p) => propertyName(p) === name);
    if (existing && Node.isPropertyAssignment(existing)) {
      const init = existing.getInitializerOrThrow();
      if (init.getText() !== valueText)
        edits.push({ start: init.getStart(), end: init.getEnd(), text: valueText });
      continue;
    }
    if (existing) {
      // `{ schemaFilter }` shorthand: replace the whole property.
      edits.push({ start: existing.getStart(), end: existing.getEnd(), text: `${name}: ${valueText}` });
      continue;
    }
    appended.push(`${name}: ${valueText}`);
  }
  if (appended.length === 0) return edits;
  const properties = obj.getProperties();
  const last = properties[properties.length - 1];
  const close = obj.getEnd() - 1; // the `}`
  if (!last) {
    edits.push({ start: obj.getStart(), end: obj.getEnd(), text: `{ ${appended.join(", ")} }` });
    return edits;
  }
  const between = text.slice(last.getEnd(), close);
  const hasTrailingComma = between.trimStart().startsWith(",");
  const multiline = obj.getText().includes("\n");
  if (multiline) {
    const indent = lineIndent(text, last.getStart());
    const at = hasTrailingComma ? last.getEnd() + between.indexOf(",") + 1 : last.getEnd();
    const lead = hasTrailingComma ? "" : ",";
    const tail = hasTrailingComma ? "," : "";
    edits.push({
      start: at,
      end: at,
      text: `${lead}${appended.map((p, i) => `\n${indent}${p}${i < appended.length - 1 ? "," : tail}`).join("")}`,
    });
  } else {
    const at = hasTrailingComma ? last.getEnd() + between.indexOf(",") + 1 : last.getEnd();
    edits.push({ start: at, end: at, text: `${hasTrailingComma ? "" : ","} ${appended.join(", ")}` });
  }
  return edits;
}
