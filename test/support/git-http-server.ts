import { spawn } from "node:child_process";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

/**
 * A real smart-HTTP git server on 127.0.0.1: Node's http server in front of `git http-backend` (the CGI git
 * ships for exactly this), behind HTTP Basic auth like a private GitHub fork. Partial-clone filters are
 * allowed, as on GitHub. `hold()` makes it accept requests and not answer them (a fetch that hangs) until
 * `release()`.
 */
export interface GitHttpServer {
  /** `http://<user>:<password>@127.0.0.1:<port>/<name>` for a repository under the served root. */
  urlWithCredentials(name: string): string;
  /** The same without credentials (the server answers 401). */
  url(name: string): string;
  /** Every request's path and whether it carried the right credentials. */
  requests: { path: string; authorized: boolean }[];
  hold(): void;
  release(): void;
  /** Resolves when the next request arrives. */
  nextRequest(): Promise<void>;
  close(): Promise<void>;
}

export async function startGitHttpServer(options: {
  /** Folder whose subfolders are the repositories (bare, or working trees with .git). */
  root: string;
  username: string;
  password: string;
}): Promise<GitHttpServer> {
  const expected = `Basic ${Buffer.from(`${options.username}:${options.password}`).toString("base64")}`;
  const requests: GitHttpServer["requests"] = [];
  let held: (() => void)[] | undefined;
  let waiters: (() => void)[] = [];

  const serve = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const authorized = req.headers.authorization === expected;
    requests.push({ path: url.pathname, authorized });
    if (!authorized) {
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="test git"' });
      res.end("credentials required\n");
      return;
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: options.root,
      GIT_HTTP_EXPORT_ALL: "1",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ""),
      REQUEST_METHOD: req.method ?? "GET",
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_USER: options.username,
      REMOTE_ADDR: "127.0.0.1",
      GIT_PROTOCOL: String(req.headers["git-protocol"] ?? ""),
      HTTP_CONTENT_ENCODING: String(req.headers["content-encoding"] ?? ""),
      // What GitHub allows: partial clones.
      GIT_CONFIG_COUNT: "1",
      GIT_CONFIG_KEY_0: "uploadpack.allowFilter",
      GIT_CONFIG_VALUE_0: "true",
    };
    if (req.headers["content-length"]) env.CONTENT_LENGTH = String(req.headers["content-length"]);
    const cgi = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "ignore"] });
    req.pipe(cgi.stdin);
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const sep = head.indexOf("\r\n\r\n") >= 0 ? head.indexOf("\r\n\r\n") : head.indexOf("\n\n");
      if (sep < 0) return;
      const sepLen = head[sep] === 13 ? 4 : 2;
      const lines = head.subarray(0, sep).toString("latin1").split(/\r?\n/);
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const i = line.indexOf(":");
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === "status") status = Number.parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      headersDone = true;
      res.write(head.subarray(sep + sepLen));
    });
    cgi.on("close", () => {
      if (!headersDone) res.writeHead(500);
      res.end();
    });
  };

  const server = http.createServer((req, res) => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
    if (held) held.push(() => serve(req, res));
    else serve(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `127.0.0.1:${port}`;
  return {
    url: (name) => `http://${base}/${name}`,
    urlWithCredentials: (name) =>
      `http://${encodeURIComponent(options.username)}:${encodeURIComponent(options.password)}@${base}/${name}`,
    requests,
    hold() {
      held ??= [];
    },
    release() {
      const queued = held ?? [];
      held = undefined;
      for (const f of queued) f();
    },
    nextRequest: () => new Promise<void>((resolve) => waiters.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The served name of a repository directory under `root`. */
export function servedName(root: string, repoDir: string): string {
  return path.relative(root, repoDir).split(path.sep).join("/");
}
