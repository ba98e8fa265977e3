import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { SMOKE } from "./smoke.js";

/**
 * `npm run bench`: runs every bench/*.bench.ts (each default-exports `{ name, run() }`), prints one table
 * and writes .bench/results.json. `npm run bench -- prepare build` runs only the named ones.
 */
export interface Bench {
  name: string;
  run(): Promise<Record<string, number | string>>;
}

interface BenchResult {
  name: string;
  ok: boolean;
  durationMs: number;
  metrics: Record<string, number | string>;
  error?: string;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");

async function main(): Promise<number> {
  const only = process.argv.slice(2).filter((a) => !a.startsWith("-"));
  const files = readdirSync(here)
    .filter((f) => f.endsWith(".bench.ts"))
    .sort();
  const results: BenchResult[] = [];
  for (const file of files) {
    const mod = (await import(pathToFileURL(path.join(here, file)).href)) as { default?: Bench };
    const bench = mod.default;
    if (!bench || typeof bench.run !== "function") {
      results.push({
        name: file,
        ok: false,
        durationMs: 0,
        metrics: {},
        error: "no default export { name, run }",
      });
      continue;
    }
    if (only.length && !only.includes(bench.name)) continue;
    process.stderr.write(`bench ${bench.name}...\n`);
    const started = performance.now();
    try {
      const metrics = await bench.run();
      results.push({
        name: bench.name,
        ok: true,
        durationMs: Math.round(performance.now() - started),
        metrics,
      });
    } catch (err) {
      results.push({
        name: bench.name,
        ok: false,
        durationMs: Math.round(performance.now() - started),
        metrics: {},
        error: err instanceof Error ? err.message : String(err),
      });
    }
  }

  const rows: [string, string, string][] = [["bench", "metric", "value"]];
  for (const r of results) {
    if (!r.ok) rows.push([r.name, "FAILED", r.error ?? ""]);
    for (const [k, v] of Object.entries(r.metrics)) rows.push([r.name, k, String(v)]);
    rows.push([r.name, "bench_ms", String(r.durationMs)]);
  }
  const widths = [0, 1].map((i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const [i, row] of rows.entries()) {
    process.stdout.write(`${row[0].padEnd(widths[0]!)}  ${row[1].padEnd(widths[1]!)}  ${row[2]}\n`);
    if (i === 0) process.stdout.write(`${"-".repeat(widths[0]!)}  ${"-".repeat(widths[1]!)}  -----\n`);
  }
  // A smoke run's figures mean nothing: they never replace the last real ones.
  if (SMOKE) return results.every((r) => r.ok) ? 0 : 1;
  const outDir = path.join(root, ".bench");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(
    path.join(outDir, "results.json"),
    `${JSON.stringify({ node: process.version, platform: `${process.platform}-${process.arch}`, results }, null, 2)}\n`,
  );
  process.stdout.write(`\nwrote ${path.relative(process.cwd(), path.join(outDir, "results.json"))}\n`);
  return results.every((r) => r.ok) ? 0 : 1;
}

process.exitCode = await main();
