import { type Document, isMap, isScalar, parseDocument, type YAMLMap } from "yaml";
import { EXIT, UserError } from "../errors.js";

/**
 * databricks.yml as a file people edit: what we render from the config is laid INTO the file that is
 * there, through the `yaml` Document API, so the keys a platform engineer adds (tags, `budget_policy_id` on
 * the app, `compute_max_instances`, a target of their own, comments) stay where they are across renders,
 * `bundle-deploy` and upgrades of this project. Ours are re-set from the config every time (the config
 * stays the one source of truth for them); what we no longer render is removed only where it is ours.
 */

type Plain = Record<string, unknown>;

function isPlainObject(v: unknown): v is Plain {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Sets every key of `value` into the map at `path`, recursing into maps so that keys only the file has
 * survive. A scalar that changes keeps its node (and the comment on it); sequences are ours whole.
 */
function layIn(doc: Document, path: string[], value: Plain): void {
  const here = path.length ? doc.getIn(path, true) : doc.contents;
  if (!isMap(here)) {
    if (path.length) doc.setIn(path, doc.createNode(value, { aliasDuplicateObjects: false }));
    else doc.contents = doc.createNode(value, { aliasDuplicateObjects: false }) as never;
    return;
  }
  for (const [key, v] of Object.entries(value)) {
    const at = [...path, key];
    const node = (here as YAMLMap).get(key, true);
    if (isPlainObject(v) && isMap(node)) layIn(doc, at, v);
    else if (!isPlainObject(v) && !Array.isArray(v) && isScalar(node)) node.value = v;
    else (here as YAMLMap).set(doc.createNode(key), doc.createNode(v, { aliasDuplicateObjects: false }));
  }
}

function has(value: unknown, path: string[]): boolean {
  let v: unknown = value;
  for (const p of path) {
    if (!isPlainObject(v) || !(p in v)) return false;
    v = v[p];
  }
  return true;
}

/** Drops the empty maps a removal leaves along `path` (never the user's non-empty ones). */
function pruneEmpty(doc: Document, path: string[]): void {
  for (let n = path.length; n > 0; n--) {
    const node = doc.getIn(path.slice(0, n), true);
    if (isMap(node) && node.items.length === 0) doc.deleteIn(path.slice(0, n));
    else return;
  }
}

/**
 * `rendered` laid into `existing` (a databricks.yml, or undefined for a new file). `owned` lists the paths
 * that are ours whether or not we render them now (a variable, a resource, an app field): one absent from
 * `rendered` is removed, e.g. the Lakebase project after a switch to an attached one.
 */
export function mergeBundleFile(
  existing: string | undefined,
  rendered: Plain,
  owned: string[][],
  header: string,
  file = "databricks.yml",
): string {
  const doc =
    existing !== undefined && existing.trim() !== ""
      ? parseDocument(existing, { keepSourceTokens: false })
      : parseDocument("{}");
  if (doc.errors.length) {
    throw new UserError(
      "bundle_file_unreadable",
      `${file} is not valid YAML: ${doc.errors[0]?.message.split("\n")[0]}`,
      EXIT.input,
      `fix it, or move it away and run render again (a new one is written from the config)`,
    );
  }
  if (
    doc.contents !== null &&
    !isMap(doc.contents) &&
    !(isScalar(doc.contents) && doc.contents.value === null)
  )
    throw new UserError(
      "bundle_file_unreadable",
      `${file} holds no mapping at its top`,
      EXIT.input,
      "move it away and run render again",
    );
  layIn(doc, [], rendered);
  for (const p of owned) {
    if (has(rendered, p) || !doc.hasIn(p)) continue;
    doc.deleteIn(p);
    pruneEmpty(doc, p.slice(0, -1));
  }
  doc.commentBefore = header;
  // Flow style (`{}`) from an empty start would make the whole file one line.
  if (isMap(doc.contents)) (doc.contents as YAMLMap).flow = false;
  return doc.toString({ lineWidth: 0 });
}
