import type { Config, ValueSource } from "./load.js";

export const MASKED = "****";

export interface ConfigRow {
  name: string;
  /** The value, or `****` for a secret variable (never printed, in any format). */
  value: string;
  source: ValueSource;
}

/** config: every variable, its value (secrets masked) and where it came from. */
export function showConfig(cfg: Config): { target: string; rows: ConfigRow[] } {
  const rows = Object.entries(cfg.values).map(([name, v]) => ({
    name,
    value: v.secret ? MASKED : v.value,
    source: v.source,
  }));
  return { target: cfg.target, rows };
}
