import { BACKEND_PORT_VARIABLE } from "./instance-ports.js";
import {
  drift,
  oneFilePatch,
  type Patch,
  type PatchContext,
  withSourceFile,
  withValidSourceFile,
} from "./patch.js";
import { applyTextEdits, type TextEdit } from "./text-edits.js";
import { type CallExpression, Node, type SourceFile } from "./ts-morph.js";

/**
 * Upstream's backend calls `app.listen(12009, ...)` with no host, so Node listens on every interface: on
 * a laptop under `local`, or from anything that reaches the app container, the backend answers directly,
 * without the proxy's token. Everything that talks to it is on the same machine: Next's rewrites and its
 * middleware (`http://localhost:12009`) and our runtime (`http://127.0.0.1:12009`). This patch gives that
 * one `listen` call the host `127.0.0.1`.
 *
 * Why 127.0.0.1 and not `localhost`: Node listens on the FIRST address `localhost` resolves to, which is
 * `::1` where /etc/hosts lists it first (Debian, Ubuntu, Docker), and then `127.0.0.1` (our runtime's
 * health check) is refused. The other way round works: Node >= 20 connects with `autoSelectFamily` on by
 * default, so a client given `localhost` that gets `::1` refused tries `127.0.0.1` next (checked on real
 * MetaMCP, docs/prepare.md).
 *
 * Upstream's shapes (read from every stable tag and main, docs/prepare.md): `app.listen(PORT, () => …)`
 * (v2.0.0–v2.0.3, `PORT = process.env.PORT || 12009`), `app.listen(12009, () => …)` (v2.0.4–v2.0.6),
 * `app.listen(12009, async () => …)` (v2.1.0 on), the same inside an `async function start()` (main).
 * All are one `<app>.listen(<port>, <callback>)`: the host goes between the two. Anything else is drift.
 *
 * The port too: upstream's is fixed (12009 in its code), so two app instances on one machine (`local up
 * --instances 2`, docs/scaling.md) would both want it. The patch makes the port
 * `Number(process.env.METAMCP_BACKEND_PORT) || <upstream's port>`: without the variable (what upstream's
 * own entrypoint gives it, and a Databricks App, one instance per container), upstream's port as before. The
 * runtime passes its METAMCP_BACKEND_PORT (default 12009) to both children; the frontend-backend-port patch
 * makes Next's middleware reach the backend at the same port.
 */
export const BACKEND_LOOPBACK_PATCH_ID = "backend-loopback";
export const BACKEND_INDEX_FILE = "apps/backend/src/index.ts";
export const BACKEND_LISTEN_HOST = "127.0.0.1";
const HOST_TEXT = JSON.stringify(BACKEND_LISTEN_HOST);
const PORT_FROM_ENV = `Number(process.env.${BACKEND_PORT_VARIABLE})`;

/** `Number(process.env.METAMCP_BACKEND_PORT) || <upstream's port>`: what the patch makes the port. */
const isOurPort = (n: Node | undefined) =>
  !!n &&
  Node.isBinaryExpression(n) &&
  n.getOperatorToken().getText() === "||" &&
  n.getLeft().getText() === PORT_FROM_ENV &&
  !Node.isBinaryExpression(n.getRight());

/** What the patch expects, for drift messages. */
export const KNOWN_LISTEN =
  "exactly one `.listen(` call, `<app>.listen(<port>, <callback>)` (MetaMCP v2.0.0 and later: `app.listen(12009, async () => …)`) " +
  "starting the backend's HTTP server";

/**
 * Every `<anything>.listen(...)` call in the file: the backend's server is started by one; a second one
 * (another server, another port) is a listener this patch has not looked at, so it is drift.
 */
function listenCalls(sf: SourceFile): CallExpression[] {
  const found: CallExpression[] = [];
  sf.forEachDescendant((node) => {
    if (!Node.isCallExpression(node)) return;
    const callee = node.getExpression();
    if (Node.isPropertyAccessExpression(callee) && callee.getName() === "listen") found.push(node);
  });
  return found;
}

const isCallback = (n: Node | undefined) => !!n && (Node.isArrowFunction(n) || Node.isFunctionExpression(n));
const isOurHost = (n: Node | undefined) =>
  !!n && Node.isStringLiteral(n) && n.getLiteralValue() === BACKEND_LISTEN_HOST;

/** The one listen call, or drift naming what was found. */
function theListenCall(file: string, sf: SourceFile, ctx: PatchContext): CallExpression {
  const calls = listenCalls(sf);
  if (calls.length !== 1) {
    throw drift(
      BACKEND_LOOPBACK_PATCH_ID,
      file,
      `${KNOWN_LISTEN}; found ${calls.length} \`.listen(\` calls${calls.length ? `: ${calls.map((c) => c.getText().split("\n")[0]).join(" | ")}` : ""}`,
      ctx,
    );
  }
  return calls[0]!;
}

export function patchBackendListenText(
  file: string,
  text: string,
  ctx: PatchContext,
): { text: string; edits: number } {
  return withSourceFile(file, text, (sf) => {
    const call = theListenCall(file, sf, ctx);
    const [port, second, third] = call.getArguments();
    if (isOurHost(second) && isOurPort(port)) return { text, edits: 0 };
    const shape = call.getText().split("\n")[0];
    if (!port || isCallback(port) || isOurHost(second) || third || (second && !isCallback(second))) {
      // No port, a host or backlog of upstream's own, a callback we can't tell from a host: not ours to guess.
      throw drift(BACKEND_LOOPBACK_PATCH_ID, file, `${KNOWN_LISTEN}; found \`${shape}\``, ctx);
    }
    // One edit: upstream's port expression kept as the fallback, the host after it.
    const edit: TextEdit = {
      start: port.getStart(),
      end: port.getEnd(),
      text: `${PORT_FROM_ENV} || ${port.getText()}, ${HOST_TEXT}`,
    };
    return { text: applyTextEdits(text, [edit]), edits: 1 };
  });
}

/** What `verify` checks on the final tree: valid TypeScript, one listen call, its port from the variable, its host `127.0.0.1`. */
export function verifyBackendListenText(file: string, text: string, ctx: PatchContext): void {
  withValidSourceFile(BACKEND_LOOPBACK_PATCH_ID, file, text, ctx, (sf) => {
    const call = theListenCall(file, sf, ctx);
    const [port, host, callback] = call.getArguments();
    if (!isOurPort(port) || !isOurHost(host) || (callback && !isCallback(callback))) {
      throw drift(
        BACKEND_LOOPBACK_PATCH_ID,
        file,
        `${KNOWN_LISTEN}, patched to listen on ${HOST_TEXT} at \`${PORT_FROM_ENV} || <port>\`; found \`${call.getText().split("\n")[0]}\``,
        ctx,
      );
    }
  });
}

export const backendLoopbackPatch: Patch = oneFilePatch({
  id: BACKEND_LOOPBACK_PATCH_ID,
  description: `the backend listens on ${BACKEND_LISTEN_HOST} only, not on every interface, at ${BACKEND_PORT_VARIABLE} (default upstream's 12009)`,
  file: BACKEND_INDEX_FILE,
  patchText: patchBackendListenText,
  verifyText: verifyBackendListenText,
});
