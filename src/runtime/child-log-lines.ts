/**
 * MetaMCP's backend prints every live MCP session id on every request that names a session
 * (`console.log("Available sessions:", sessionManager.getSessionIds())` in streamable-http.ts, v2.4.x and
 * main): one line per id, util.inspect's array form. With a few hundred sessions that is hundreds of lines per
 * call. Relaying them cost the app more CPU than MetaMCP spent answering (measured in docs/decisions.md) and
 * put every session id in the app's logs. A list of ids becomes one line with their count; any other line
 * passes as printed.
 */
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const ID_ITEM = new RegExp(`^\\s+'${UUID}',?$`, "i");
const MORE_ITEMS = /^\s+\.\.\. (\d+) more items?$/;
const INLINE_IDS = new RegExp(`\\[ '${UUID}'(?:, '${UUID}')* \\]`, "gi");
/** A line held to see whether a list of ids follows is let go after this long without its next line. */
const HOLD_MS = 100;

const counted = (n: number) => `[${n} id${n === 1 ? "" : "s"}, not logged]`;
const inline = (line: string) =>
  line.replace(INLINE_IDS, (list) => counted(list.match(new RegExp(UUID, "gi"))?.length ?? 0));

/**
 * The lines upstream's Streamable HTTP route prints for every request (v2.4.x's `console.log`s in
 * streamable-http.ts). MetaMCP main prints the same through its logger at `info`, which its default
 * `LOG_LEVEL=errors-only` hides: the app does the same for releases that print them unconditionally, and
 * relays them when `LOG_LEVEL` is `all` or `info`. Who called what is the audit's (docs/audit.md), not these.
 */
export const PER_REQUEST_LINES =
  /^(?:(?:POST|GET|DELETE) \/mcp request for endpoint: |Authentication method: |Session ID: |Looking up existing session: |Looking for sessionId: |Found session \S+, handling request$|Available sessions: \[|Available session IDs: \[)/;

/** The backend's lines the app does not relay under MetaMCP's `LOG_LEVEL` (unset: upstream's errors-only). */
export function quietLinesFor(logLevel: string | undefined): RegExp | undefined {
  return logLevel === "all" || logLevel === "info" ? undefined : PER_REQUEST_LINES;
}

export interface LineFilter {
  line(text: string): void;
  /** The stream ended: whatever is held goes out. */
  end(): void;
}

export function condenseIdLists(relay: (line: string) => void, options: { drop?: RegExp } = {}): LineFilter {
  const emit = options.drop
    ? (line: string) => {
        if (!options.drop!.test(line)) relay(line);
      }
    : relay;
  let opener: string | undefined;
  let ids = 0;
  let timer: NodeJS.Timeout | undefined;
  const release = () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (opener === undefined) return;
    const held = opener;
    opener = undefined;
    // Cut short (another line came before `]`): what was seen is still said, never the ids.
    emit(ids > 0 ? `${held.trimEnd()} ${counted(ids)} …` : held);
    ids = 0;
  };
  const line = (text: string): void => {
    if (opener !== undefined) {
      if (ID_ITEM.test(text)) {
        ids++;
        return;
      }
      const more = ids > 0 ? MORE_ITEMS.exec(text) : null;
      if (more) {
        ids += Number(more[1]);
        return;
      }
      if (ids > 0 && text.trim() === "]") {
        const held = opener.trimEnd().slice(0, -1).trimEnd();
        opener = undefined;
        if (timer) clearTimeout(timer);
        timer = undefined;
        emit(`${held} ${counted(ids)}`);
        ids = 0;
        return;
      }
      release();
    }
    if (text.trimEnd().endsWith("[")) {
      opener = text;
      timer = setTimeout(release, HOLD_MS);
      timer.unref();
      return;
    }
    emit(inline(text));
  };
  return { line, end: release };
}
