/**
 * Command-line patterns of process faults, compiled with RE2 (the `re2js` port): matching takes time
 * linear in the command line, whatever the pattern, so no pattern can freeze the agent's event loop
 * (a backtracking `^(a+)+$` took the JavaScript engine minutes on one crafted command line). The
 * control plane and the agent compile with this same function, so both accept the same syntax.
 */
import { RE2JS, RE2JSException } from "re2js";

/** The longest pattern accepted, in characters. */
export const PATTERN_MAX_LENGTH = 256;
/**
 * The largest compiled program accepted (RE2's "program size", about one instruction per literal
 * character or operator). Matching costs command-line length × program size at worst; every
 * realistic pattern stays far below this.
 */
export const PATTERN_MAX_PROGRAM_SIZE = 500;
/** How much of a command line is matched: its first 4 KiB. */
export const CMDLINE_MATCH_BYTES = 4096;

/** A compiled command-line pattern. */
export interface ProcessPattern {
  /** The pattern as given. */
  readonly source: string;
  /** Whether the pattern matches anywhere in `text` (unanchored, like RegExp.prototype.test). */
  test(text: string): boolean;
}

/** Thrown when a pattern is not accepted; the message says why and what to use instead. */
export class ProcessPatternError extends Error {
  override readonly name = "ProcessPatternError";
}

const SYNTAX_HINT = "see https://github.com/google/re2/wiki/Syntax";

/** Constructs of backtracking engines RE2 leaves out, with what to write instead. */
const UNSUPPORTED: { test: RegExp; what: string }[] = [
  { test: /\\[1-9]/, what: "backreferences (\\1) are not supported" },
  { test: /\\k</, what: "named backreferences (\\k<name>) are not supported" },
  { test: /\(\?[=!]/, what: "lookahead ((?=…), (?!…)) is not supported" },
  { test: /\(\?<[=!]/, what: "lookbehind ((?<=…), (?<!…)) is not supported" },
  { test: /\(\?>/, what: "atomic groups ((?>…)) are not supported" },
  { test: /[*+?}]\+/, what: "possessive quantifiers (a*+, a++) are not supported" },
];

/**
 * Compiles a command-line pattern with RE2.
 * Thrown when it is too long, uses syntax RE2 does not have (backreferences, lookaround...), is
 * invalid, or compiles too large: ProcessPatternError with a message that says what to change.
 */
export function compileProcessPattern(pattern: string): ProcessPattern {
  if (pattern.length > PATTERN_MAX_LENGTH) {
    throw new ProcessPatternError(
      `is ${pattern.length} characters long, more than the ${PATTERN_MAX_LENGTH} allowed; match a distinctive part of the command line, or select by name`,
    );
  }
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(pattern);
  } catch (err) {
    if (!(err instanceof RE2JSException)) throw err;
    const unsupported = UNSUPPORTED.find((u) => u.test.test(pattern));
    if (unsupported) {
      throw new ProcessPatternError(
        `${unsupported.what}: patterns run on RE2, which matches in linear time and has no backtracking constructs; rewrite it without them (${SYNTAX_HINT})`,
      );
    }
    const reason = err.message.replace(/^error parsing regexp: /, "");
    throw new ProcessPatternError(`is not a valid RE2 regular expression: ${reason} (${SYNTAX_HINT})`);
  }
  const size = compiled.programSize();
  if (size > PATTERN_MAX_PROGRAM_SIZE) {
    throw new ProcessPatternError(
      `compiles to ${size} RE2 instructions, more than the ${PATTERN_MAX_PROGRAM_SIZE} allowed (large counted repetitions such as {500} cost the most); use a shorter pattern`,
    );
  }
  return {
    source: pattern,
    test: (text) => compiled.test(text),
  };
}
