import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { execa } from "execa";
import { PROJECT_ROOT } from "./cli.js";
import { tempDir } from "./tmp.js";

const DEPCRUISE = path.join(PROJECT_ROOT, "node_modules/dependency-cruiser/bin/dependency-cruise.mjs");
const CONFIG = path.join(PROJECT_ROOT, ".dependency-cruiser.cjs");

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
}

/**
 * The violations of our .dependency-cruiser.cjs (what `npm run lint` runs) on a tiny src/ tree written
 * from `files`, as "rule: from → to" lines, sorted: a rule's test shows it fires on what it forbids and
 * on nothing else.
 */
export async function importRuleViolations(files: Record<string, string>): Promise<string[]> {
  const dir = tempDir("mmdb-depcruise-");
  writeFileSync(
    path.join(dir, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { module: "NodeNext", moduleResolution: "NodeNext" },
      include: ["src"],
    }),
  );
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  const r = await execa(process.execPath, [DEPCRUISE, "src", "--config", CONFIG, "--output-type", "json"], {
    cwd: dir,
    reject: false,
  });
  const out = JSON.parse(r.stdout) as { summary: { violations: Violation[] } };
  return out.summary.violations.map((v) => `${v.rule.name}: ${v.from} → ${v.to}`).sort();
}
