import { describe, expect, it } from "vitest";
import { importRuleViolations } from "../support/import-rules.js";

/**
 * The command/domain boundaries of .dependency-cruiser.cjs (run by `npm run lint`), checked on a tiny src/
 * tree with allowed and forbidden imports: the rules fire on what they forbid and on nothing else.
 * (`npm run lint` checks the real src/.)
 */

describe("command and domain boundaries (.dependency-cruiser.cjs)", () => {
  it("no-domain-imports-cli: cli/ imports domain modules (also lazily); nothing outside cli/ imports cli/", async () => {
    const found = await importRuleViolations({
      "src/errors.ts": "export class UserError extends Error {}\n",
      "src/cli/common.ts": 'import { UserError } from "../errors.js";\nexport const action = UserError;\n',
      "src/cli/confirm.ts": "export const confirm = async () => false;\n",
      // the command loads its domain module inside the action: allowed
      "src/cli/destroy.ts":
        'import { action } from "./common.js";\nimport { confirm } from "./confirm.js";\nexport const run = async () => [action, confirm, (await import("../databricks/destroy.js")).destroy];\n',
      "src/databricks/destroy.ts":
        'import { UserError } from "../errors.js";\nexport const destroy = UserError;\n',
      // a domain module reaching for the CLI's prompt: forbidden (a type import too)
      "src/local/up.ts":
        'import { confirm } from "../cli/confirm.js";\nimport type { action } from "../cli/common.js";\nexport const up = confirm;\nexport type A = typeof action;\n',
    });
    expect(found).toEqual([
      "no-domain-imports-cli: src/local/up.ts → src/cli/common.ts",
      "no-domain-imports-cli: src/local/up.ts → src/cli/confirm.ts",
    ]);
  });

  it("no-folder-cycles and no-module-cycles: folders form a DAG, and so do modules", async () => {
    const found = await importRuleViolations({
      "src/errors.ts": "export const E = 1;\n",
      // config → local → config through different modules: a folder cycle, no module cycle
      "src/config/load.ts": 'import { x } from "../local/state.js";\nexport const load = x;\n',
      "src/config/names.ts": "export const n = 1;\n",
      "src/local/state.ts": 'import { E } from "../errors.js";\nexport const x = E;\n',
      "src/local/up.ts": 'import { n } from "../config/names.js";\nexport const up = n;\n',
      // a module cycle inside one folder
      "src/databricks/a.ts": 'import { b } from "./b.js";\nexport const a = () => b;\n',
      "src/databricks/b.ts": 'import { a } from "./a.js";\nexport const b = () => a;\n',
      // one way only: allowed
      "src/cli/main.ts": 'import { load } from "../config/load.js";\nexport const m = load;\n',
    });
    expect(found).toEqual([
      "no-folder-cycles: src/config → src/local",
      "no-folder-cycles: src/local → src/config",
      "no-module-cycles: src/databricks/a.ts → src/databricks/b.ts",
    ]);
  });
});
