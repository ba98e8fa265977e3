/**
 * The one placeholder check: a value somebody left where a real one belongs. Used by the CLI's config loader
 * (every variable), `render`'s app.yaml guard (every value it writes) and the runtime's BETTER_AUTH_SECRET
 * check. Core (no dependency): the runtime bundle ships it.
 */

/**
 * `reference`: template syntax nothing substituted (`{{secrets/s/k}}`, `<secret>`, `${VAR}`, `$(cmd)`,
 * `$VAR`): neither .env nor app.yaml expands anything. `stand-in`: one of the "change me" family of words.
 */
export type PlaceholderKind = "reference" | "stand-in";

/**
 * What the value must be: `setting`, any configuration value (only whole-value stand-ins count: `none`,
 * `test` or `default` are real settings); `secret`, a value that must be random, so stand-in words count
 * anywhere in it, and so do the usual stand-in values (`secret`, `password`, `xxxx…`).
 */
export type PlaceholderScope = "setting" | "secret";

/**
 * Long stand-in words, looked for with everything but letters and digits removed, so `Replace_Me`,
 * `your-secret-here` and `CHANGE ME!` all count: in a secret anywhere, in a setting as the whole value.
 */
const STAND_IN_WORDS = [
  "changeme",
  "changethis",
  "replaceme",
  "replacethis",
  "yoursecret",
  "yourkey",
  "secrethere",
  "keyhere",
  "valuehere",
  "placeholder",
  "example",
  "notasecret",
  "redacted",
  "generateone",
  "putyour",
];
const STAND_IN_ANYWHERE = new RegExp(`(${STAND_IN_WORDS.join("|")})`);
/**
 * Short words count only as a whole word, and in a secret only in a value with few distinct characters (what
 * people type): a random base64 secret holds "tbd" somewhere about once in 750 draws, and "+todo=" about
 * once in 450,000 (both seen), and `openssl rand` output must never be refused.
 */
const SHORT_STAND_INS = new Set(["dummy", "insert", "fixme", "todo", "tbd", "setme", "fillme"]);
const TYPED_BY_HAND_BELOW = 24;
/** Whole values that are stand-ins for a secret (and real values for a setting). */
const SECRET_STAND_INS = new Set([
  "secret",
  "password",
  "passwd",
  "test",
  "default",
  "none",
  "null",
  "undefined",
]);

function isReference(s: string, scope: PlaceholderScope): boolean {
  if (/^\{\{.*\}\}$/s.test(s) || /^<.*>$/s.test(s) || /\$\{[^}]*\}|\$\([^)]*\)|^\$[A-Za-z_]\w*$/.test(s))
    return true;
  // A setting is never expanded, so `$HOME/x` is as unsubstituted as `$HOME`; a random secret may hold `$Ab`.
  return scope === "setting" && /\$[A-Z_][A-Z0-9_]+/.test(s);
}

/** How `value` is a placeholder rather than a real value, or undefined when it is not one. */
export function placeholderKind(value: string, scope: PlaceholderScope): PlaceholderKind | undefined {
  const s = value.trim();
  if (isReference(s, scope)) return "reference";
  const letters = s.toLowerCase().replace(/[^a-z0-9]/g, "");
  if (scope === "setting")
    return STAND_IN_WORDS.includes(letters) || SHORT_STAND_INS.has(letters) ? "stand-in" : undefined;
  const standIn =
    SECRET_STAND_INS.has(letters) ||
    STAND_IN_ANYWHERE.test(letters) ||
    (new Set(s).size < TYPED_BY_HAND_BELOW &&
      s
        .toLowerCase()
        .split(/[^a-z0-9]+/)
        .some((word) => SHORT_STAND_INS.has(word))) ||
    /^(.)\1*$/.test(letters) ||
    letters === "";
  return standIn ? "stand-in" : undefined;
}
