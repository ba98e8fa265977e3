import {
  drift,
  editFile,
  type Patch,
  type PatchContext,
  requireFile,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits, lineIndent, propertyName, type TextEdit } from "./text-edits.js";
import { Node, type ObjectLiteralExpression, type SourceFile } from "./ts-morph.js";

/**
 * MetaMCP's "Create endpoint" form has "Automatically create an MCP server for this endpoint" ticked by
 * default. The server it makes (`endpoints.impl.ts`) calls `${APP_URL}/metamcp/<endpoint>/mcp`: on Databricks
 * (and under `local`) that is the Apps proxy, which sends a caller without a workspace token to its sign-in
 * page, so the server shows "Connection Error" and MetaMCP logs it at every start. It also copies the
 * creator's MetaMCP API key into the server's `bearerToken`, which MetaMCP lists to every signed-in person
 * when the endpoint (hence the server) is public. So this patch turns the default off, in the form and in the
 * tRPC input's default, and says why under the checkbox (docs/faults.md, item 22.4). Ticking it stays
 * possible: it is upstream's feature, the note says what it does here.
 *
 * Upstream's shapes (read at every `v2.*` tag and main): the page is
 * `apps/frontend/app/(sidebar)/endpoints/page.tsx` (v2.0.0–v2.2.5) or
 * `apps/frontend/app/[locale]/(sidebar)/endpoints/page.tsx` (v2.3.0 on), its form values written as object
 * literals with `createMcpServer: true` (2 of them before v2.4.0, 3 after: `useForm`'s defaultValues and the
 * resets; the submit payload passes `data.createMcpServer` on), the checkbox `<Checkbox id="createMcpServer" … />` in a `<div>` followed by a `<p>` that explains
 * it; `packages/zod-types/src/endpoints.zod.ts` has `CreateEndpointRequestSchema` with
 * `createMcpServer: z.boolean().default(true)` (every release).
 */
export const ENDPOINT_SERVER_DEFAULT_PATCH_ID = "endpoint-server-default";
export const ENDPOINTS_PAGE_FILES = [
  "apps/frontend/app/[locale]/(sidebar)/endpoints/page.tsx",
  "apps/frontend/app/(sidebar)/endpoints/page.tsx",
] as const;
export const ENDPOINTS_ZOD_FILE = "packages/zod-types/src/endpoints.zod.ts";

/** What a person reads under the checkbox: why it is off, what it would do here, what to use instead. */
export const ENDPOINT_SERVER_NOTE =
  "Off by default on Databricks: the server this creates calls the endpoint at the app's public URL, " +
  'where the Databricks Apps proxy asks for a workspace sign-in, so it shows "Connection Error" (and ' +
  "MetaMCP logs it at every start). It also copies your MetaMCP API key into the server's settings, which " +
  "everyone can read when the endpoint is public. To try the endpoint, connect an MCP client to it " +
  "(metamcp-databricks connect <endpoint>).";
/** Marks our element, so verify (and a second apply) find it and nothing of upstream's is taken for it. */
export const NOTE_MARKER = 'data-metamcp-databricks="endpoint-server-note"';
const NOTE_ELEMENT = `<p className="text-xs text-muted-foreground" ${NOTE_MARKER}>{${JSON.stringify(ENDPOINT_SERVER_NOTE)}}</p>`;

const FIELD = "createMcpServer";
export const KNOWN_PAGE =
  "the create-endpoint form with form values `createMcpServer: true` (useForm's defaultValues, form.reset) " +
  'and the checkbox `<Checkbox id="createMcpServer" … />` inside a `<div>` (MetaMCP v2.0.0 and later)';
export const KNOWN_ZOD =
  "`export const CreateEndpointRequestSchema = z.object({ …, createMcpServer: z.boolean().default(true), … })` " +
  "(MetaMCP v2.0.0 and later)";
const ZOD_UPSTREAM = "z.boolean().default(true)";
const ZOD_OURS = "z.boolean().default(false)";

/**
 * Every `createMcpServer: <value>` property of an object literal in the file, by its value; the submit
 * payload's pass-through (`createMcpServer: data.createMcpServer`) is no default and is left out.
 */
function formValues(sf: SourceFile): { value: string; node: Node }[] {
  const found: { value: string; node: Node }[] = [];
  sf.forEachDescendant((node) => {
    if (!Node.isPropertyAssignment(node) || propertyName(node) !== FIELD) return;
    if (!Node.isObjectLiteralExpression(node.getParent())) return;
    const init = node.getInitializer();
    if (!init || (Node.isPropertyAccessExpression(init) && init.getName() === FIELD)) return;
    found.push({ value: init.getText(), node: init });
  });
  return found;
}

/** The `<div>` holding `<Checkbox id="createMcpServer" …/>`, or undefined. */
function checkboxRow(sf: SourceFile): Node | undefined {
  let row: Node | undefined;
  sf.forEachDescendant((node, walk) => {
    if (!Node.isJsxSelfClosingElement(node) || node.getTagNameNode().getText() !== "Checkbox") return;
    const id = node.getAttribute("id");
    const init = id && Node.isJsxAttribute(id) ? id.getInitializer() : undefined;
    if (!init || !Node.isStringLiteral(init) || init.getLiteralValue() !== FIELD) return;
    const parent = node.getParent();
    if (
      parent &&
      Node.isJsxElement(parent) &&
      parent.getOpeningElement().getTagNameNode().getText() === "div"
    )
      row = parent;
    walk.stop();
  });
  return row;
}

/** Where the note goes: after upstream's explanation `<p>` when it follows the row, else after the row. */
function noteAnchor(row: Node): Node {
  const next = row.getNextSiblings().find((n) => !(Node.isJsxText(n) && n.getText().trim() === ""));
  if (next && Node.isJsxElement(next) && next.getOpeningElement().getTagNameNode().getText() === "p")
    return next;
  return row;
}

const hasNote = (text: string) => text.includes(NOTE_MARKER);

export function patchEndpointsPageText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  return withSourceFile(file, text, (sf) => {
    const values = formValues(sf);
    const row = checkboxRow(sf);
    const other = values.filter((v) => v.value !== "true" && v.value !== "false");
    if (values.length === 0 || other.length > 0 || !row) {
      const found = !row
        ? 'no `<Checkbox id="createMcpServer" />` inside a `<div>`'
        : other.length
          ? `\`createMcpServer: ${other[0]!.value}\``
          : "no `createMcpServer:` form value";
      throw drift(ENDPOINT_SERVER_DEFAULT_PATCH_ID, file, `${KNOWN_PAGE}; found ${found}`, ctx);
    }
    const edits: TextEdit[] = values
      .filter((v) => v.value === "true")
      .map((v) => ({ start: v.node.getStart(), end: v.node.getEnd(), text: "false" }));
    if (!hasNote(text)) {
      const anchor = noteAnchor(row);
      const indent = lineIndent(text, anchor.getStart());
      edits.push({ start: anchor.getEnd(), end: anchor.getEnd(), text: `\n${indent}${NOTE_ELEMENT}` });
    }
    return edits.length ? { text: applyTextEdits(text, edits), edits: edits.length } : { text, edits: 0 };
  });
}

export function verifyEndpointsPageText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(ENDPOINT_SERVER_DEFAULT_PATCH_ID, file, text, ctx, (sf) => {
    const values = formValues(sf).map((v) => v.value);
    if (values.length === 0 || values.some((v) => v !== "false") || !checkboxRow(sf) || !hasNote(text)) {
      throw drift(
        ENDPOINT_SERVER_DEFAULT_PATCH_ID,
        file,
        `${KNOWN_PAGE}, patched to \`createMcpServer: false\` everywhere with our note under the checkbox; found form values [${values.join(", ")}]${hasNote(text) ? "" : " and no note"}`,
        ctx,
      );
    }
  });
}

/** The `createMcpServer` property of `CreateEndpointRequestSchema`'s `z.object({…})`, or a reason. */
function requestDefault(sf: SourceFile): Node | string {
  const init = sf.getVariableDeclaration("CreateEndpointRequestSchema")?.getInitializer();
  if (!init || !Node.isCallExpression(init)) return "no `CreateEndpointRequestSchema = z.object(…)`";
  const obj = init.getArguments()[0];
  if (!obj || !Node.isObjectLiteralExpression(obj)) return "no object passed to `z.object(`";
  const prop = (obj as ObjectLiteralExpression).getProperties().find((p) => propertyName(p) === FIELD);
  const value = prop && Node.isPropertyAssignment(prop) ? prop.getInitializer() : undefined;
  return value ?? "no `createMcpServer:` in it";
}

export function patchEndpointsZodText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  return withSourceFile(file, text, (sf) => {
    const value = requestDefault(sf);
    if (typeof value === "string")
      throw drift(ENDPOINT_SERVER_DEFAULT_PATCH_ID, file, `${KNOWN_ZOD}; found ${value}`, ctx);
    const now = value.getText();
    if (now === ZOD_OURS) return { text, edits: 0 };
    if (now !== ZOD_UPSTREAM)
      throw drift(
        ENDPOINT_SERVER_DEFAULT_PATCH_ID,
        file,
        `${KNOWN_ZOD}; found \`createMcpServer: ${now}\``,
        ctx,
      );
    return {
      text: applyTextEdits(text, [{ start: value.getStart(), end: value.getEnd(), text: ZOD_OURS }]),
      edits: 1,
    };
  });
}

export function verifyEndpointsZodText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(ENDPOINT_SERVER_DEFAULT_PATCH_ID, file, text, ctx, (sf) => {
    const value = requestDefault(sf);
    const now = typeof value === "string" ? value : `\`createMcpServer: ${value.getText()}\``;
    if (now !== `\`createMcpServer: ${ZOD_OURS}\``)
      throw drift(
        ENDPOINT_SERVER_DEFAULT_PATCH_ID,
        file,
        `${KNOWN_ZOD}, patched to \`${ZOD_OURS}\`; found ${now}`,
        ctx,
      );
  });
}

/** The one endpoints page of this release, or drift naming both places it has been. */
function pageFile(tree: { read(f: string): string | undefined }, ctx: PatchContext): string {
  const present = ENDPOINTS_PAGE_FILES.filter((f) => tree.read(f) !== undefined);
  if (present.length !== 1)
    throw drift(
      ENDPOINT_SERVER_DEFAULT_PATCH_ID,
      ENDPOINTS_PAGE_FILES.join(" or "),
      `exactly one of the two endpoints pages to exist; found ${present.length}`,
      ctx,
    );
  return present[0]!;
}

export const endpointServerDefaultPatch: Patch = {
  id: ENDPOINT_SERVER_DEFAULT_PATCH_ID,
  description:
    "the endpoint form's \"Automatically create an MCP server\" is off by default, with a note saying why (it can't pass the Apps proxy)",
  apply(tree, ctx) {
    const page = pageFile(tree, ctx);
    const files = [
      ...editFile(tree, page, this.id, ctx, (t) => patchEndpointsPageText(page, t, ctx)).files,
      ...editFile(tree, ENDPOINTS_ZOD_FILE, this.id, ctx, (t) =>
        patchEndpointsZodText(ENDPOINTS_ZOD_FILE, t, ctx),
      ).files,
    ];
    return { files };
  },
  verify(tree, ctx) {
    const page = pageFile(tree, ctx);
    verifyEndpointsPageText(page, requireFile(tree, page, this.id, ctx), ctx);
    verifyEndpointsZodText(ENDPOINTS_ZOD_FILE, requireFile(tree, ENDPOINTS_ZOD_FILE, this.id, ctx), ctx);
  },
};
