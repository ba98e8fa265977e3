import { describe, expect, it } from "vitest";
import { importRuleViolations } from "../support/import-rules.js";

/**
 * The import boundaries of .dependency-cruiser.cjs (run by `npm run lint`), checked on a tiny src/ tree
 * with one allowed and one forbidden import per rule: the rules fire on what they forbid and on nothing
 * else. (`npm run lint` checks the real src/.)
 */

describe("import boundaries (.dependency-cruiser.cjs)", () => {
  it("runtime-sealed: the runtime imports runtime files and core only; core-is-leaf: core imports core only", async () => {
    const found = await importRuleViolations({
      "src/errors.ts": "export class UserError extends Error {}\n",
      "src/names.ts": 'import { UserError } from "./errors.js";\nexport const n = UserError;\n',
      "src/log/logger.ts": 'import { n } from "../names.js";\nexport const log = n;\n',
      // core reaching into a part: forbidden
      "src/log/secrets.ts": 'import { schema } from "../config/variables.js";\nexport const s = schema;\n',
      "src/config/variables.ts": "export const schema = 1;\n",
      "src/cli/start.ts": 'import { run } from "../runtime/main.js";\nexport const start = run;\n',
      "src/runtime/env.ts":
        'import { UserError } from "../errors.js";\nimport { log } from "../log/logger.js";\nexport const e = [UserError, log];\n',
      // the runtime reaching into the CLI's config: forbidden
      "src/runtime/main.ts":
        'import { e } from "./env.js";\nimport { schema } from "../config/variables.js";\nexport const run = [e, schema];\n',
    });
    expect(found).toEqual([
      "core-is-leaf: src/log/secrets.ts → src/config/variables.ts",
      "runtime-sealed: src/runtime/main.ts → src/config/variables.ts",
    ]);
  });
});
