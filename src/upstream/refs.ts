import { distance } from "fastest-levenshtein";
import semver from "semver";
import { EXIT, UserError } from "../errors.js";
import { git } from "./git.js";

export interface GitRef {
  /** Short name: `v2.4.22`, `main`. */
  name: string;
  /** The commit it points at (annotated tags peeled). */
  commit: string;
}

export interface RepoRefs {
  tags: GitRef[];
  branches: GitRef[];
  defaultBranch: string;
  /** Names of the tags whose commit is in the default branch's history. */
  tagsOnDefaultBranch: Set<string>;
}

export type RefKind = "release" | "tag" | "branch" | "commit";

export interface ResolvedRef {
  /** What the user asked for (empty: the newest stable release). */
  requestedRef: string;
  /** The tag or branch name it resolved to; the full SHA for a commit no tag points at. */
  resolvedRef: string;
  kind: RefKind;
  commit: string;
  /** One line for humans: why this ref. */
  reason: string;
}

/** `vMAJOR.MINOR.PATCH` and nothing else: no pre-release (`-test`), no suffix (`-docker-per-mcp`). */
export function stableVersion(tag: string): string | undefined {
  const m = /^v(\d+)\.(\d+)\.(\d+)$/.exec(tag);
  return m ? `${Number(m[1])}.${Number(m[2])}.${Number(m[3])}` : undefined;
}

export interface ReleaseChoice {
  chosen: GitRef | undefined;
  /** Tags ranked above the chosen one, and why each was passed over (highest first). */
  skipped: { tag: string; reason: string }[];
}

/**
 * The newest stable release: the highest `vX.Y.Z` tag whose commit is on the default branch. Version
 * order alone is wrong upstream (suffixed side-line tags, and plain tags on a side branch).
 */
export function pickLatestStableRelease(
  tags: readonly GitRef[],
  isOnDefaultBranch: (tag: GitRef) => boolean,
  defaultBranch = "the default branch",
): ReleaseChoice {
  const versionOf = (t: GitRef) => semver.coerce(t.name, { includePrerelease: true })?.version;
  const ranked = tags
    .map((t) => ({ t, stable: stableVersion(t.name), loose: versionOf(t) }))
    .filter((x): x is { t: GitRef; stable: string | undefined; loose: string } => x.loose !== undefined)
    .sort((a, b) => {
      const byVersion = semver.rcompare(a.stable ?? a.loose, b.stable ?? b.loose);
      if (byVersion !== 0) return byVersion;
      // Same core version: the plain tag before its suffixed siblings (v2.4.0 before v2.4.0-test).
      return (a.stable ? 0 : 1) - (b.stable ? 0 : 1) || a.t.name.localeCompare(b.t.name);
    });
  const skipped: ReleaseChoice["skipped"] = [];
  for (const { t, stable } of ranked) {
    if (!stable) {
      const full = semver.valid(t.name.replace(/^v/, ""));
      skipped.push({
        tag: t.name,
        reason: full && semver.prerelease(full) ? "pre-release or suffixed tag" : "not a plain vX.Y.Z tag",
      });
      continue;
    }
    if (!isOnDefaultBranch(t)) {
      skipped.push({ tag: t.name, reason: `not on ${defaultBranch}` });
      continue;
    }
    return { chosen: t, skipped };
  }
  return { chosen: undefined, skipped };
}

/** Tags ordered by closeness to what was asked (edit distance, then newest version first). */
export function nearestTags(requested: string, tags: readonly string[], count = 5): string[] {
  const version = (t: string) => semver.coerce(t)?.version ?? "0.0.0";
  const wanted = semver.coerce(requested);
  // For a version-like request, numeric closeness first (v2.4.23 → v2.4.22, v2.4.21...), then spelling.
  const gap = (t: string): number[] => {
    const v = semver.coerce(t);
    if (!wanted || !v) return [Number.MAX_SAFE_INTEGER];
    return [
      Math.abs(v.major - wanted.major),
      Math.abs(v.minor - wanted.minor),
      Math.abs(v.patch - wanted.patch),
    ];
  };
  const byGap = (a: number[], b: number[]) => {
    for (let i = 0; i < Math.max(a.length, b.length); i++) {
      const d = (a[i] ?? 0) - (b[i] ?? 0);
      if (d !== 0) return d;
    }
    return 0;
  };
  return [...tags]
    .map((t) => ({ t, g: gap(t), d: distance(requested.toLowerCase(), t.toLowerCase()) }))
    .sort(
      (a, b) =>
        byGap(a.g, b.g) || a.d - b.d || semver.rcompare(version(a.t), version(b.t)) || a.t.localeCompare(b.t),
    )
    .slice(0, count)
    .map((x) => x.t);
}

/** Every branch and tag in the (cached, bare) repository, and which tags are on the default branch. */
export async function listRefs(gitDir: string, defaultBranch: string): Promise<RepoRefs> {
  const fmt = "%(refname)%00%(objectname)%00%(*objectname)%00%(objecttype)%00%(*objecttype)";
  const r = await git(["for-each-ref", `--format=${fmt}`, "refs/tags", "refs/heads"], { gitDir });
  const tags: GitRef[] = [];
  const branches: GitRef[] = [];
  for (const line of r.stdout.split("\n")) {
    if (!line) continue;
    const [ref = "", obj = "", peeled = "", type = "", peeledType = ""] = line.split("\0");
    const isCommit = type === "commit" || (type === "tag" && peeledType === "commit");
    if (!isCommit) continue;
    const commit = peeled || obj;
    if (ref.startsWith("refs/tags/")) tags.push({ name: ref.slice("refs/tags/".length), commit });
    else if (ref.startsWith("refs/heads/")) branches.push({ name: ref.slice("refs/heads/".length), commit });
  }
  const merged = await git(
    ["for-each-ref", "--format=%(refname:strip=2)", `--merged=refs/heads/${defaultBranch}`, "refs/tags"],
    { gitDir },
  );
  return {
    tags,
    branches,
    defaultBranch,
    tagsOnDefaultBranch: new Set(merged.stdout.split("\n").filter(Boolean)),
  };
}

function refNotFound(requested: string, refs: RepoRefs, repoUrl: string): UserError {
  const near = nearestTags(
    requested,
    refs.tags.map((t) => t.name),
  );
  return new UserError(
    "ref_not_found",
    `ref ${JSON.stringify(requested)} is not a tag, branch or commit of ${repoUrl}` +
      (near.length ? `; nearest tags: ${near.join(", ")}` : "; the repository has no tags"),
    EXIT.input,
    "pass --ref / METAMCP_REF as an existing tag, branch or commit SHA (empty = newest stable release)",
  );
}

/**
 * Resolves what the user asked for against the mirror: empty → newest stable release; otherwise a tag,
 * a branch, or a full/short commit SHA, in that order.
 */
export async function resolveRef(
  gitDir: string,
  requested: string,
  refs: RepoRefs,
  repoUrl: string,
): Promise<ResolvedRef> {
  const want = requested.trim();
  if (want === "") {
    const choice = pickLatestStableRelease(
      refs.tags,
      (t) => refs.tagsOnDefaultBranch.has(t.name),
      refs.defaultBranch,
    );
    if (!choice.chosen) {
      throw new UserError(
        "no_stable_release",
        `${repoUrl} has no stable release tag (vX.Y.Z) on its default branch ${refs.defaultBranch}`,
        EXIT.input,
        "pass --ref / METAMCP_REF (a tag, branch or commit SHA)",
      );
    }
    const passed = choice.skipped.length
      ? `; passed over ${choice.skipped
          .slice(0, 6)
          .map((s) => `${s.tag} (${s.reason})`)
          .join(", ")}${choice.skipped.length > 6 ? `, and ${choice.skipped.length - 6} more` : ""}`
      : "";
    return {
      requestedRef: "",
      resolvedRef: choice.chosen.name,
      kind: "release",
      commit: choice.chosen.commit,
      reason: `newest stable release tag on ${refs.defaultBranch}${passed}`,
    };
  }
  const name = want.replace(/^refs\/(tags|heads)\//, "");
  const tag = refs.tags.find((t) => t.name === name && !want.startsWith("refs/heads/"));
  if (tag)
    return { requestedRef: want, resolvedRef: tag.name, kind: "tag", commit: tag.commit, reason: "tag" };
  const branch = refs.branches.find((b) => b.name === name && !want.startsWith("refs/tags/"));
  if (branch) {
    return {
      requestedRef: want,
      resolvedRef: branch.name,
      kind: "branch",
      commit: branch.commit,
      reason: `branch, at its current head`,
    };
  }
  if (/^[0-9a-f]{4,40}$/i.test(want)) {
    let commit = await revParseCommit(gitDir, want);
    if (!commit && want.length === 40) {
      // A commit no branch or tag reaches: some servers serve it by SHA.
      await git(["fetch", "--quiet", "origin", want], { gitDir, allowFailure: true });
      commit = await revParseCommit(gitDir, want);
    }
    if (commit) {
      const exact = refs.tags.find((t) => t.commit === commit);
      return {
        requestedRef: want,
        resolvedRef: exact?.name ?? commit,
        kind: "commit",
        commit,
        reason: exact ? `commit, tagged ${exact.name}` : "commit",
      };
    }
  }
  throw refNotFound(want, refs, repoUrl);
}

async function revParseCommit(gitDir: string, sha: string): Promise<string | undefined> {
  const r = await git(["rev-parse", "--verify", "--quiet", "--end-of-options", `${sha}^{commit}`], {
    gitDir,
    allowFailure: true,
  });
  if (r.exitCode === 0) return r.stdout.trim();
  if (/ambiguous/i.test(r.stderr)) {
    throw new UserError(
      "ref_ambiguous",
      `short SHA ${sha} is ambiguous: more than one commit starts with it`,
      EXIT.input,
      "pass more characters of the SHA (or the full SHA)",
    );
  }
  return undefined;
}
