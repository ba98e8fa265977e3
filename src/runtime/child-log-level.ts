/**
 * The level of one line MetaMCP's backend or frontend printed. They print with console.log/warn/error
 * and Next's marks, not a structured logger: stderr is at least a warning, and an error's own marks (a
 * stack frame, `Error:`, a refused connection, Next's ⨯) make it an error wherever it was printed, so
 * `local logs --level error` and the app's log search find "Connection Error" and its stack.
 */
export type ChildLogLevel = "info" | "warn" | "error";

const ERROR_MARKS =
  /^\s*⨯|^\s+at \S|\b[A-Za-z]*Error\b|\bECONN(REFUSED|RESET)\b|\bEADDRINUSE\b|\bENOTFOUND\b|\bETIMEDOUT\b|\bUnhandled\b|\bfatal\b|\bfailed\b/i;
const WARN_MARKS = /^\s*⚠|\bwarn(ing)?\b|\bdeprecat/i;

export function childLogLevel(source: "stdout" | "stderr", line: string): ChildLogLevel {
  if (ERROR_MARKS.test(line)) return "error";
  if (source === "stderr" || WARN_MARKS.test(line)) return "warn";
  return "info";
}
