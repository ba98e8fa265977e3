import path from "node:path";
import type { Command } from "commander";
import { MANIFEST_PATH } from "../upstream/manifest.js";
import type { PrepareResult } from "../upstream/prepare.js";
import { action } from "./common.js";

interface PrepareFlags {
  ref?: string;
  repo?: string;
  buildDir?: string;
  schema?: string;
  cacheDir?: string;
  force?: boolean;
}

function describe(r: PrepareResult): string {
  const m = r.manifest;
  if (r.unchanged) {
    return [
      `MetaMCP ${m.resolvedRef}${m.resolvedRef === m.commit ? "" : ` (${m.commit.slice(0, 12)})`} in ${r.buildDir} is current: nothing to do`,
      `  from     ${m.repoUrl}`,
      `  schema   ${m.schema}`,
      `  manifest ${path.join(r.buildDir, MANIFEST_PATH)}`,
      "  (--force prepares it again)",
    ].join("\n");
  }
  const lines = [
    `prepared MetaMCP ${m.resolvedRef}${m.resolvedRef === m.commit ? "" : ` (${m.commit.slice(0, 12)})`} in ${r.buildDir}`,
    `  from     ${m.repoUrl}`,
    `  ref      ${m.requestedRef ? `${m.requestedRef} (${r.ref.reason})` : r.ref.reason}`,
    `  schema   ${m.schema}`,
  ];
  const idWidth = Math.max(0, ...m.patches.map((p) => p.id.length));
  for (const p of m.patches) {
    const edits = p.files.reduce((n, f) => n + f.edits, 0);
    const counts = p.counts
      ? `: ${Object.entries(p.counts)
          .map(([k, v]) => `${v} ${k}`)
          .join(", ")}`
      : "";
    lines.push(`  patch    ${p.id.padEnd(idWidth)} ${edits} edit(s) in ${p.files.length} file(s)${counts}`);
    if (p.note) lines.push(`           ${p.note}`);
  }
  lines.push(`  manifest ${path.join(r.buildDir, MANIFEST_PATH)}`);
  lines.push(
    `  took     ${(r.timings.totalMs / 1000).toFixed(1)}s${r.cacheCreated ? " (first clone into the cache)" : ""}`,
  );
  return lines.join("\n");
}

export function registerPrepare(program: Command): void {
  program
    .command("prepare")
    .description("Clone MetaMCP at a ref, overlay our files and apply the Lakebase patches")
    .option(
      "--ref <ref>",
      "tag, branch or full/short commit SHA; env METAMCP_REF (default: newest stable release)",
    )
    .option("--repo <url>", "git URL, file:// URL or local path of MetaMCP or a fork; env METAMCP_REPO_URL")
    .option("--build-dir <dir>", "where the patched tree goes; env BUILD_DIR (default build/metamcp)")
    .option("--schema <name>", "PostgreSQL schema for every MetaMCP object; env METAMCP_DB_SCHEMA")
    .option("--cache-dir <dir>", "clone cache; env METAMCP_CACHE_DIR (default: the user cache dir)")
    .option("--force", "prepare again even when the build dir already holds exactly this tree")
    .addHelpText("after", `\nWith --json, stdout is the manifest written to <build-dir>/${MANIFEST_PATH}`)
    .action(
      action(async (ctx, opts: PrepareFlags) => {
        const cfg = ctx.config({
          ref: opts.ref,
          repo: opts.repo,
          "build-dir": opts.buildDir,
          schema: opts.schema,
          "cache-dir": opts.cacheDir,
        });
        // Loaded on use; the patches (and the TypeScript compiler) load only when the tree is not current.
        const { prepareFromConfig } = await import("../upstream/prepare.js");
        const result = await prepareFromConfig(cfg, ctx.log, opts.force ?? false);
        ctx.result(result.manifest, () => describe(result));
      }),
    );
}
