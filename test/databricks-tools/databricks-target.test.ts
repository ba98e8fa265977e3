import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DatabricksWorld, startDatabricksWorld } from "../support/databricks-world.js";

/**
 * `databricks-tools` for a Databricks target: the workspace host comes from the profile, the app's URL and its
 * service principal from the Apps API (the emulator), and the server is created through the emulated Apps proxy
 * with the profile's OAuth token. The app behind the proxy answers as our router and MetaMCP's tRPC do (a page
 * request opens a MetaMCP session; `mcpServers.create` / `list` read it).
 */
const APP = "metamcp-dev-someone";

describe("databricks-tools against a Databricks target (emulator)", () => {
  let root: string;
  let world: DatabricksWorld;
  let app: Server;
  let spId: string;
  const created: Record<string, unknown>[] = [];
  const seen: { path: string; authorization?: string; cookie?: string }[] = [];

  beforeAll(async () => {
    root = mkdtempSync(path.join(os.tmpdir(), "mmdb-tools-dbx-"));
    app = createServer(async (req: IncomingMessage, res) => {
      seen.push({
        path: req.url ?? "",
        authorization: req.headers.authorization,
        cookie: req.headers.cookie,
      });
      const json = (body: unknown) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (req.url === "/") {
        res.writeHead(200, {
          "set-cookie": "__Secure-better-auth.session_token=s1.sig; Path=/; Secure; HttpOnly",
        });
        res.end("<html></html>");
        return;
      }
      if (req.url?.startsWith("/trpc/frontend.mcpServers.create")) {
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const input = (
          JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, Record<string, unknown>>
        )["0"]!;
        const row = { uuid: `u${created.length + 1}`, user_id: "me", ...input };
        created.push(row);
        return json([{ result: { data: { success: true, data: row } } }]);
      }
      if (req.url?.startsWith("/trpc/frontend.mcpServers.list"))
        return json([{ result: { data: { success: true, data: created } } }]);
      res.writeHead(404);
      res.end();
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", r));
    world = await startDatabricksWorld(
      root,
      {},
      { appTarget: `http://127.0.0.1:${(app.address() as AddressInfo).port}` },
    );
    spId = world.emulator.addApp(APP).sp.clientId;
  });
  afterAll(async () => {
    await world?.close();
    app?.closeAllConnections();
    await new Promise((r) => app?.close(r));
    rmSync(root, { recursive: true, force: true });
  });

  it("add builds the URL on the profile's workspace host and creates it through the proxy as the profile's user", async () => {
    const r = await world.run([
      "--json",
      "databricks-tools",
      "add",
      "genie",
      "01ef0123456789abcdef0123456789ab",
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { url: string; principal: string; grants: string[]; kind: string };
    expect(out.url).toBe(
      `${new URL(world.emulator.url).origin}/api/2.0/mcp/genie/01ef0123456789abcdef0123456789ab`,
    );
    expect(out.principal).toBe(spId);
    expect(out.grants[0]).toContain(`CAN VIEW for ${spId}`);
    expect(created[0]).toMatchObject({
      name: "databricks-genie-01ef0123456789abcdef0123456789ab",
      type: "STREAMABLE_HTTP",
    });
    // Through the proxy: the app saw the session cookie on the tRPC call (the token stays the proxy's).
    expect(seen.find((s) => s.path.startsWith("/trpc/"))?.cookie).toBe(
      "__Secure-better-auth.session_token=s1.sig",
    );
    const list = await world.run(["--json", "databricks-tools", "list"]);
    expect(list.exitCode, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { kind: string; ids: string[] }[])[0]).toMatchObject({
      kind: "genie",
      ids: ["01ef0123456789abcdef0123456789ab"],
    });
  });

  it("grants names the app's service principal from the Apps API", async () => {
    const r = await world.run(["databricks-tools", "grants", "connection", "github"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`GRANT USE CONNECTION ON CONNECTION \`github\` TO \`${spId}\`;`);
  });

  it("--user is for --local only", async () => {
    const r = await world.run(["databricks-tools", "list", "--user", "a@example.com"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--user is for the local rehearsal/);
  });
});
