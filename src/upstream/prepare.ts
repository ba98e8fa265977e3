import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { isUserError } from "../errors.js";
import type { Logger } from "../log/logger.js";
import { logProgress, runSteps, type Step } from "../log/steps.js";
import { PATCH_IDS } from "../patches/ids.js";
import type { Patch } from "../patches/index.js";
import type { PatchRunReport } from "../patches/runner.js";
import { TOOL_VERSION } from "../version.js";
import { assertBuildDirReplaceable, makeWorkDir, removeDeadSiblings, swapIntoPlace } from "./build-dir.js";
import { defaultCacheDir, type Mirror, syncMirror, unreachable } from "./cache.js";
import { exportCommit } from "./checkout.js";
import { type CurrentCheck, checkPreparedTree, overlayFiles, recordTree } from "./current.js";
import { OVERLAY_PATH, toolRoot } from "./locations.js";
import { MANIFEST_PATH, type PrepareManifest, renderManifest } from "./manifest.js";
import type { ResolvedRef } from "./refs.js";
import { locateRepo } from "./repo-url.js";

export interface PrepareOptions {
  /** Git URL, file:// URL or local path of MetaMCP (or a fork). */
  repoUrl: string;
  /** Tag, branch, full or short SHA; empty = the newest stable release. */
  ref: string;
  buildDir: string;
  schema: string;
  /** Root of the clone cache (one bare mirror per repository URL); default: the user cache dir. */
  cacheDir?: string | undefined;
  /** Our overlay folder (its top-level README.md is not copied); may not exist. */
  overlayDir: string;
  toolVersion: string;
  log: Logger;
  /** Relative local paths resolve against this (default: process.cwd()). */
  cwd?: string;
  /** Defaults to every patch in src/patches/index.ts. */
  patches?: readonly Patch[];
  /** Prepare again even when the build dir already holds exactly this tree. */
  force?: boolean;
}

export interface PrepareTimings {
  fetchMs: number;
  checkoutMs: number;
  patchMs: number;
  totalMs: number;
}

export interface PrepareResult {
  manifest: PrepareManifest;
  buildDir: string;
  ref: ResolvedRef;
  /** True when this prepare cloned the repository into the cache (a full download). */
  cacheCreated: boolean;
  /** True when the build dir already held this tree and was left alone. */
  unchanged: boolean;
  timings: PrepareTimings;
}

/** Copies overlay/ (but its own README) over the tree; returns the files it wrote, sorted. */
export function applyOverlay(overlayDir: string, treeDir: string): string[] {
  const written = overlayFiles(overlayDir);
  for (const rel of written) {
    const dest = path.join(treeDir, rel);
    mkdirSync(path.dirname(dest), { recursive: true });
    cpSync(path.join(overlayDir, rel), dest);
  }
  return written;
}

/** Loads ts-morph (and TypeScript) into the module cache; a failure here is reported where it is used. */
function warmTypeScript(): void {
  try {
    createRequire(import.meta.url)("ts-morph");
  } catch {
    // The patch that needs it says so.
  }
}

/** What a "nothing to do" prepare returns: the tree's own manifest, untouched. */
function unchangedResult(
  manifest: PrepareManifest,
  buildDir: string,
  started: number,
  reason: string,
  fetchMs = 0,
): PrepareResult {
  return {
    manifest,
    buildDir,
    ref: {
      requestedRef: manifest.requestedRef,
      resolvedRef: manifest.resolvedRef,
      kind: manifest.refKind,
      commit: manifest.commit,
      reason,
    },
    cacheCreated: false,
    unchanged: true,
    timings: { fetchMs, checkoutMs: 0, patchMs: 0, totalMs: Math.round(performance.now() - started) },
  };
}

/** What prepare's steps found, for the steps after them and the result. */
interface PrepareContext {
  mirror?: Mirror;
  ref?: ResolvedRef;
  /** The build dir already holds this commit: the steps after the ref have nothing to do. */
  unchanged?: PrepareResult;
  checkoutMs?: number;
  overlay?: string[];
  reports?: PatchRunReport[];
  patchMs?: number;
  manifest?: PrepareManifest;
}

const unchangedSkip = (c: PrepareContext) => c.unchanged !== undefined && "the build dir holds this commit";

/**
 * Clone (through the cache), check out, overlay, patch, verify and record MetaMCP at a ref, in a work dir
 * beside the build dir; the result replaces the build dir only when every step succeeded, and only when the
 * build dir is ours to replace. When the build dir already holds exactly that tree, nothing is done (decided
 * before git runs for a tag or SHA, and before the TypeScript compiler is loaded in every case).
 */
export async function prepareUpstream(options: PrepareOptions): Promise<PrepareResult> {
  const started = performance.now();
  const { log } = options;
  const repo = locateRepo(options.repoUrl, options.cwd ?? process.cwd());
  const repoUrl = repo.url;
  const buildDir = path.resolve(options.cwd ?? process.cwd(), options.buildDir);
  assertBuildDirReplaceable(buildDir);
  removeDeadSiblings(buildDir, log);

  const check: CurrentCheck = options.force
    ? { state: "stale", reason: "--force" }
    : checkPreparedTree({
        buildDir,
        repoUrl,
        ref: options.ref,
        schema: options.schema,
        toolVersion: options.toolVersion,
        overlayDir: options.overlayDir,
        patchIds: options.patches?.map((p) => p.id) ?? PATCH_IDS,
      });
  if (check.state === "current") {
    // The command's summary says "nothing to do"; this line is for --debug.
    log.debug(`${buildDir} already holds ${check.manifest.resolvedRef}, unchanged: nothing to do`);
    return unchangedResult(check.manifest, buildDir, started, `${check.manifest.refKind}, prepared earlier`);
  }
  if (check.state === "stale" && existsSync(path.join(buildDir, MANIFEST_PATH))) {
    log.info(`preparing again: ${check.reason}`);
  }

  // The patches bring the TypeScript compiler: start loading them while git works.
  const patchesModule = options.patches ? undefined : import("../patches/index.js");
  patchesModule?.catch(() => undefined);
  const previous = existsSync(buildDir);
  let work: string | undefined;
  const ctx: PrepareContext = {};
  // Each title is a progress line under --debug; what each step found is its own info line.
  const steps: Step<PrepareContext>[] = [
    {
      title: "cached mirror",
      task: async (c) => {
        const cacheDir = options.cacheDir ?? (await defaultCacheDir(undefined));
        // While git fetches, this thread loads the TypeScript compiler the patches need (a synchronous
        // require, shared through Node's module cache). Not when a branch may turn out current: then
        // nothing needs it.
        const mirror = await syncMirror(repo, cacheDir, log, options.patches ? undefined : warmTypeScript);
        c.mirror = mirror;
        log.info(
          `${mirror.created ? "cloned" : mirror.fetched ? "updated" : "used"} the cached mirror in ${(mirror.durationMs / 1000).toFixed(1)}s`,
        );
      },
    },
    {
      title: "ref",
      task: async (c) => {
        const mirror = c.mirror!;
        const { listRefs, resolveRef } = await import("./refs.js");
        const refs = await listRefs(mirror.gitDir, mirror.defaultBranch);
        const ref = await resolveRef(mirror.gitDir, options.ref, refs, repoUrl);
        c.ref = ref;
        log.info(
          `using ${ref.resolvedRef}${ref.resolvedRef === ref.commit ? "" : ` (${ref.commit.slice(0, 12)})`}: ${
            ref.requestedRef ? `${JSON.stringify(ref.requestedRef)} is a ${ref.reason}` : ref.reason
          }`,
        );
        if (check.state === "if-ref-unmoved" && check.manifest.commit === ref.commit) {
          log.debug(
            `${buildDir} already holds ${ref.resolvedRef} at ${ref.commit.slice(0, 12)}, unchanged: nothing to do`,
          );
          c.unchanged = unchangedResult(check.manifest, buildDir, started, ref.reason, mirror.durationMs);
        }
      },
    },
    {
      title: "checkout",
      skip: unchangedSkip,
      task: async (c) => {
        const mirror = c.mirror!;
        const commit = c.ref!.commit;
        work = makeWorkDir(buildDir, previous);
        const checkoutStart = performance.now();
        try {
          // git starts checking out before exportCommit's first await returns: if the fetch was too short
          // (or failed offline) to load the compiler, it loads now, beside the checkout. A no-op when loaded.
          const checkout = exportCommit(mirror.gitDir, commit, work, mirror.credentials);
          if (!options.patches) warmTypeScript();
          await checkout;
        } catch (err) {
          // A partial mirror fetches the commit's files here: the remote may be gone since.
          throw unreachable(repoUrl, err);
        }
        c.checkoutMs = Math.round(performance.now() - checkoutStart);
        log.info(`checked out ${commit.slice(0, 12)} in ${(c.checkoutMs / 1000).toFixed(1)}s`);
      },
    },
    {
      title: "overlay",
      skip: unchangedSkip,
      task: (c) => {
        c.overlay = applyOverlay(options.overlayDir, work!);
        if (c.overlay.length) log.info(`overlaid ${c.overlay.length} file(s) from ${options.overlayDir}`);
      },
    },
    {
      title: "patches",
      skip: unchangedSkip,
      task: async (c) => {
        const patchStart = performance.now();
        const { applyPatches, DiskTree, PATCHES } = await (patchesModule ?? import("../patches/index.js"));
        const patchCtx = { schema: options.schema, upstreamRef: c.ref!.resolvedRef };
        c.reports = applyPatches(new DiskTree(work!), options.patches ?? PATCHES, patchCtx, (r) => {
          const edits = r.files.reduce((n, f) => n + f.edits, 0);
          const counts = r.counts
            ? ` (${Object.entries(r.counts)
                .map(([k, v]) => `${v} ${k}`)
                .join(", ")})`
            : "";
          log.info(`patch ${r.id}: ${edits} edit(s) in ${r.files.length} file(s)${counts}`);
          if (r.note) log.warn(`patch ${r.id}: ${r.note}`);
        });
        c.patchMs = Math.round(performance.now() - patchStart);
        log.info(`patches verified in ${(c.patchMs / 1000).toFixed(1)}s`);
      },
    },
    {
      title: "manifest",
      skip: unchangedSkip,
      task: (c) => {
        const ref = c.ref!;
        c.manifest = {
          repoUrl,
          requestedRef: ref.requestedRef,
          resolvedRef: ref.resolvedRef,
          refKind: ref.kind,
          commit: ref.commit,
          schema: options.schema,
          toolVersion: options.toolVersion,
          overlay: c.overlay!,
          patches: c.reports!.map(({ durationMs: _ms, ...record }) => record),
        };
        const manifestFile = path.join(work!, MANIFEST_PATH);
        mkdirSync(path.dirname(manifestFile), { recursive: true });
        writeFileSync(manifestFile, renderManifest(c.manifest));
        recordTree(work!);
      },
    },
    {
      title: `replace ${buildDir}`,
      skip: unchangedSkip,
      task: () => {
        const installed = work!;
        work = undefined;
        try {
          swapIntoPlace(installed, buildDir);
        } finally {
          rmSync(installed, { recursive: true, force: true });
        }
      },
    },
  ];
  try {
    await runSteps(steps, ctx, { progress: logProgress(log, "debug") });
    if (ctx.unchanged) return ctx.unchanged;
    return {
      manifest: ctx.manifest!,
      buildDir,
      ref: ctx.ref!,
      cacheCreated: ctx.mirror!.created,
      unchanged: false,
      timings: {
        fetchMs: ctx.mirror!.durationMs,
        checkoutMs: ctx.checkoutMs!,
        patchMs: ctx.patchMs!,
        totalMs: Math.round(performance.now() - started),
      },
    };
  } catch (err) {
    if (work) {
      rmSync(work, { recursive: true, force: true });
      rmSync(`${work}.index`, { force: true });
    }
    // swapIntoPlace and makeWorkDir say themselves where the trees are.
    const told = isUserError(err) && /^(build_dir_|old_tree_)/.test(err.code);
    if (!told) {
      const what = isUserError(err) ? "prepare failed" : "prepare crashed";
      log.warn(
        previous
          ? `${what}: the previous tree at ${buildDir} is untouched`
          : `${what}: nothing was written to ${buildDir}`,
      );
    }
    throw err;
  }
}

/**
 * What `prepareFromConfig` reads of the configuration (src/config's `Config` has these): named here so the
 * upstream folder does not import config, which imports upstream's URL handling.
 */
export interface PrepareConfig {
  repoUrl: string;
  ref: string;
  buildDir: string;
  schema: string;
  cwd: string;
  values: { METAMCP_CACHE_DIR?: { value?: string | undefined } | undefined };
}

/** `prepare` as the CLI and `local` run it: every input from the one configuration. */
export async function prepareFromConfig(
  config: PrepareConfig,
  log: Logger,
  force = false,
): Promise<PrepareResult> {
  return await prepareUpstream({
    repoUrl: config.repoUrl,
    ref: config.ref,
    buildDir: config.buildDir,
    schema: config.schema,
    cacheDir: config.values.METAMCP_CACHE_DIR?.value
      ? path.resolve(config.values.METAMCP_CACHE_DIR.value)
      : undefined,
    overlayDir: path.join(toolRoot(), OVERLAY_PATH),
    toolVersion: TOOL_VERSION,
    cwd: config.cwd,
    log,
    ...(force ? { force } : {}),
  });
}
