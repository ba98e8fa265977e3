import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import writeFileAtomic from "write-file-atomic";
import { EXIT, UserError } from "../errors.js";
import type { ClientConfig } from "./clients.js";

export interface WriteResult {
  file: string;
  /** `created` a new file, `added` our entry to a file, `updated` our entry in it. */
  action: "created" | "added" | "updated";
}

/**
 * Adds (or replaces) our one server entry in a client's config file, keeping every other server,
 * input and setting of the user's as it was. A file we cannot parse as JSON (VS Code allows comments)
 * is left alone: the user adds the printed entry by hand.
 */
export function writeClientConfig(
  config: ClientConfig,
  serverName: string,
  projectDir: string,
): WriteResult | undefined {
  if (!config.file || !config.entry) return undefined;
  const file = path.resolve(projectDir, config.file);
  let doc: Record<string, unknown> = {};
  let existed = false;
  let mode = 0o644;
  if (existsSync(file)) {
    existed = true;
    mode = statSync(file).mode & 0o777;
    const text = readFileSync(file, "utf8");
    try {
      const parsed = text.trim() ? (JSON.parse(text) as unknown) : {};
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
      doc = parsed as Record<string, unknown>;
    } catch {
      throw new UserError(
        "client_config_unreadable",
        `${file} is not plain JSON (comments or a syntax error): left unchanged`,
        EXIT.input,
        "add the entry printed by `connect` (without --write) to it by hand",
      );
    }
  }
  const servers = (doc[config.serversKey] ?? {}) as Record<string, unknown>;
  if (typeof servers !== "object" || Array.isArray(servers)) {
    throw new UserError(
      "client_config_unreadable",
      `${file}: "${config.serversKey}" is not an object: left unchanged`,
      EXIT.input,
      "fix the file, or add the printed entry by hand",
    );
  }
  const had = serverName in servers;
  doc[config.serversKey] = { ...servers, [serverName]: config.entry };
  if (config.inputs) {
    const ours = new Set(config.inputs.map((i) => i.id));
    const theirs = Array.isArray(doc.inputs) ? (doc.inputs as { id?: unknown }[]) : [];
    doc.inputs = [...theirs.filter((i) => !ours.has(i.id)), ...config.inputs];
  }
  mkdirSync(path.dirname(file), { recursive: true });
  // Whole or not at all: a client reading its config mid-write never sees half of it.
  writeFileAtomic.sync(file, `${JSON.stringify(doc, null, 2)}\n`, { mode });
  return { file, action: !existed ? "created" : had ? "updated" : "added" };
}
