/**
 * Every secret value the process learns is registered here, and every line we print or log passes
 * through `maskSecrets`. Registering is cheap; forgetting to register is the bug to avoid.
 */
/**
 * Shorter values are not masked: every real secret we hold (tokens, client secrets, auth secrets of 16+
 * characters) is far longer, and masking a short common string (a word, a number) would garble every
 * unrelated message that happens to contain it.
 */
const MIN_SECRET_LENGTH = 8;
const secrets = new Set<string>();

export const MASK = "****";

export function registerSecret(value: string | undefined | null): void {
  if (!value || value.length < MIN_SECRET_LENGTH) return;
  secrets.add(value);
  // Secrets also travel URL-encoded (connection strings, query strings) and base64'd (Basic auth).
  const encoded = encodeURIComponent(value);
  if (encoded !== value) secrets.add(encoded);
}

export function maskSecrets(text: string): string {
  if (secrets.size === 0) return text;
  let out = text;
  // Longest first so a secret that contains another is masked whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) {
    if (out.includes(s)) out = out.split(s).join(MASK);
  }
  return out;
}

/** Masks secrets inside any JSON-able value (for --json output and structured logs). */
export function maskDeep<T>(value: T): T {
  if (secrets.size === 0) return value;
  return JSON.parse(maskSecrets(JSON.stringify(value))) as T;
}

/** For tests: forget every registered secret. */
export function clearSecrets(): void {
  secrets.clear();
}
