import type { AddressInfo } from "node:net";
import { AuditObserver } from "../src/runtime/audit-observer.js";
import { AuditWriter } from "../src/runtime/audit-writer.js";
import { searchPathOption } from "../src/runtime/database.js";
import { createRouter } from "../src/runtime/router.js";

/**
 * The router in a process of its own, as in the app (bench/mcp-proxy.bench.ts starts two: audit on and off),
 * in front of BACKEND_PORT. With AUDIT=on its rows go to the PostgreSQL named by PG_URL_JSON. Prints
 * `{"port":…}` once listening; on SIGTERM writes what is queued and prints the writer's stats, the requests
 * it served and the CPU time it used.
 */
const backendPort = Number(process.env.BACKEND_PORT);
const auditOn = process.env.AUDIT === "on";
/** `observe`: the observer parses and makes rows, which are thrown away: its share of the cost alone. */
const observeOnly = process.env.AUDIT === "observe";
const pgConfig = auditOn ? JSON.parse(process.env.PG_URL_JSON ?? "{}") : undefined;
const schema = process.env.SCHEMA ?? "metamcp_app";
const writer = auditOn
  ? new AuditWriter({
      connection: { ...pgConfig, options: searchPathOption(schema) },
      schema,
      retentionDays: 90,
      warn: (m) => process.stderr.write(`${m}\n`),
    })
  : undefined;
writer?.start();
const router = createRouter({
  backendPort,
  frontendPort: 1,
  trustedProxyAddresses: ["127.0.0.1"],
  audit: writer
    ? new AuditObserver({ sink: writer, arguments: "off" })
    : observeOnly
      ? new AuditObserver({ sink: { record: () => {} }, arguments: "off" })
      : undefined,
});
router.ready = true;
// CPU per request: what the audit costs the router's process, less at the mercy of a busy machine than rates.
let requests = 0;
router.server.on("request", () => requests++);
const cpu0 = process.cpuUsage();
router.server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${JSON.stringify({ port: (router.server.address() as AddressInfo).port })}\n`);
});
process.on("SIGTERM", async () => {
  await router.close(100);
  await writer?.close(10_000);
  const cpu = process.cpuUsage(cpu0);
  const cpuUs = cpu.user + cpu.system;
  process.stdout.write(`${JSON.stringify({ stats: writer?.stats() ?? null, requests, cpuUs })}\n`);
  process.exit(0);
});
