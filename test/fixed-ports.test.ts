/**
 * Suites that start MetaMCP-shaped servers on upstream's fixed ports (backend 12009, frontend 12008)
 * run in this one file, one after another, so they never collide with each other.
 * The runtime's own suites (test/runtime/start.suite.ts, faults.suite.ts) pick free ports instead
 * (METAMCP_BACKEND_PORT / METAMCP_FRONTEND_PORT) while holding 12008/12009 themselves, and run on their
 * own: test/runtime/start.test.ts and faults.test.ts.
 */
import "./local/local.suite.js";
import "./local/mcp-proxy.suite.js";
import "./local/endpoint-identity.suite.js";
import "./local/browser.suite.js";
import "./local/faults.suite.js";
import "./connect/local.suite.js";
// The first deploy runs the app (the runtime and its children) inside the workspace emulator.
import "./databricks/first-deploy.suite.js";
