import { KNOWN_NEXT_CONFIG_SHAPE, NEXT_CONFIG_FILE, nextConfigObject } from "./next-config.js";
import {
  drift,
  oneFilePatch,
  type Patch,
  type PatchContext,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits, propertyName, setPropertyEdits } from "./text-edits.js";
import { Node, type ObjectLiteralExpression } from "./ts-morph.js";

export { NEXT_CONFIG_FILE };

/**
 * The app tree must stay as deployed (on Databricks the source tree is the deployment; under `local` a
 * changed tree no longer matches its manifest and the next `make local` assembles it again: 12.3 s instead
 * of 6.6 s). Running, Next writes into its own `.next/`: the image optimizer's cache
 * (`.next/cache/images/<key>/…`, for every `/_next/image` request: MetaMCP's sidebar logo is a `next/image`)
 * and the incremental cache (`.next/cache/fetch-cache`, revalidated pages under `.next/server/`). Next 15
 * offers no setting for where those live: the image cache is `join(distDir, "cache", "images")`, fixed. It
 * has one switch for whether they reach the disk at all, `experimental.isrFlushToDisk` (default true):
 * false makes `ImageOptimizerCache.set` and the file-system incremental cache's `set` return before writing
 * (read in next 15.3.0, 15.4.8, 15.5.2 and 15.5.12, every Next a MetaMCP 2 lockfile pins). The caches then
 * live in memory only (Next's in-memory LRU, `cacheMaxMemorySize`), which is where an app with an ephemeral
 * filesystem keeps them anyway; the cost is re-optimising an image per request (one small logo here). This
 * patch sets that switch in `apps/frontend/next.config.js`; `next build` embeds it in the standalone
 * `server.js`. (A symbolic link from `.next/cache` to a temp dir made at start would still be a write into
 * the tree, and bundle sync drops symlinks.)
 *
 * Upstream's shapes (every `v2.*` tag and main): `const nextConfig = { output: "standalone", … }` exported as
 * `export default nextConfig`; without `experimental` up to v2.4.5, with `experimental: { proxyTimeout }` from
 * v2.4.6.
 */
export const NEXT_DISK_CACHE_PATCH_ID = "next-disk-cache";
const SWITCH = "isrFlushToDisk";

export const KNOWN_NEXT_CONFIG_CACHE = `${KNOWN_NEXT_CONFIG_SHAPE}, its \`experimental\` (if any) an object literal (MetaMCP v2.0.0 and later)`;

/** `experimental`'s object, "none", or a description of another form (drift). */
function experimentalOf(obj: ObjectLiteralExpression): ObjectLiteralExpression | "none" | string {
  const props = obj.getProperties().filter((p) => propertyName(p) === "experimental");
  if (props.length === 0) return "none";
  const value =
    props.length === 1 && Node.isPropertyAssignment(props[0]!) ? props[0].getInitializer() : undefined;
  return value && Node.isObjectLiteralExpression(value) ? value : `\`${props[0]!.getText().split("\n")[0]}\``;
}

export function patchNextDiskCacheText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  return withSourceFile(file, text, (sf) => {
    const obj = nextConfigObject(sf);
    if (!obj) throw drift(NEXT_DISK_CACHE_PATCH_ID, file, KNOWN_NEXT_CONFIG_CACHE, ctx);
    const experimental = experimentalOf(obj);
    if (typeof experimental === "string" && experimental !== "none")
      throw drift(NEXT_DISK_CACHE_PATCH_ID, file, `${KNOWN_NEXT_CONFIG_CACHE}; found ${experimental}`, ctx);
    const { edits, changed } =
      experimental === "none"
        ? setPropertyEdits(obj, [{ name: "experimental", valueText: `{ ${SWITCH}: false }` }])
        : setPropertyEdits(experimental, [{ name: SWITCH, valueText: "false" }]);
    return changed ? { text: applyTextEdits(text, edits), edits: changed } : { text, edits: 0 };
  });
}

export function verifyNextDiskCacheText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(NEXT_DISK_CACHE_PATCH_ID, file, text, ctx, (sf) => {
    const obj = nextConfigObject(sf);
    const experimental = obj ? experimentalOf(obj) : "no config";
    const value =
      typeof experimental === "string"
        ? undefined
        : experimental.getProperties().find((p) => propertyName(p) === SWITCH);
    const ok = value && Node.isPropertyAssignment(value) && value.getInitializer()?.getText() === "false";
    if (!ok)
      throw drift(
        NEXT_DISK_CACHE_PATCH_ID,
        file,
        `${KNOWN_NEXT_CONFIG_CACHE}, patched with \`experimental: { ${SWITCH}: false }\`; found ${value ? `\`${value.getText()}\`` : "none"}`,
        ctx,
      );
  });
}

export const nextDiskCachePatch: Patch = oneFilePatch({
  id: NEXT_DISK_CACHE_PATCH_ID,
  description: "Next keeps its image and page caches in memory, never writing into the app tree",
  file: NEXT_CONFIG_FILE,
  patchText: patchNextDiskCacheText,
  verifyText: verifyNextDiskCacheText,
});
