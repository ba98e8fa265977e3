#!/usr/bin/env node
import { existsSync } from "node:fs";

// A fresh clone has no dist/ until it is built: say so rather than Node's ERR_MODULE_NOT_FOUND.
const cli = new URL("../dist/cli.js", import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write(
    "metamcp-databricks is not built yet: run `npm run build` in its folder (npm test and the Makefile do it).\n",
  );
  process.exit(2);
}
await import(cli.href);
