import { createServer, type Server } from "node:http";

/**
 * Holds upstream's fixed ports 12008/12009 on 127.0.0.1 with a dummy server (answering 503 "held"), as a
 * `make local` or another MetaMCP running beside the suite would. Suites that start MetaMCP-shaped trees on
 * their own free ports (METAMCP_BACKEND_PORT / METAMCP_FRONTEND_PORT) call it to show they never touch
 * upstream's. A port already held by something else is left to it (it is held either way).
 *
 * Only when TEST_HOLD_UPSTREAM_PORTS=1: in a normal run the suites that still need 12008/12009
 * (test/fixed-ports.test.ts) run at the same time in another worker. The proof run:
 *   TEST_HOLD_UPSTREAM_PORTS=1 npx vitest run test/runtime/start.test.ts test/runtime/faults.test.ts
 */
export const UPSTREAM_PORTS = [12008, 12009] as const;

export async function holdUpstreamPorts(): Promise<{ held: number[]; release(): Promise<void> }> {
  const servers: Server[] = [];
  const held: number[] = [];
  const wanted = process.env.TEST_HOLD_UPSTREAM_PORTS === "1" ? UPSTREAM_PORTS : [];
  for (const port of wanted) {
    const server = createServer((_req, res) => {
      res.writeHead(503, { "content-type": "text/plain" });
      res.end("held by the test suite: not MetaMCP");
    });
    const ok = await new Promise<boolean>((resolve) => {
      server.once("error", () => resolve(false));
      server.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (ok) {
      servers.push(server);
      held.push(port);
    }
  }
  return {
    held,
    release: async () => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.closeAllConnections();
              s.close(() => r());
            }),
        ),
      );
    },
  };
}
