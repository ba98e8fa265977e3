import { maskSecrets } from "../log/secrets.js";
import type { Config, ValueSource } from "./load.js";

export interface ConfigRow {
  name: string;
  /** The value, every secret the process knows in it masked (`****`), in any output format. */
  value: string;
  source: ValueSource;
}

/** config: every variable, its value (secrets masked) and where it came from. */
export function showConfig(cfg: Config): { target: string; rows: ConfigRow[] } {
  const rows = Object.entries(cfg.values).map(([name, v]) => ({
    name,
    value: maskSecrets(v.value),
    source: v.source,
  }));
  return { target: cfg.target, rows };
}
