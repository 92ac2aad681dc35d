/**
 * Token scopes: a label selector on an API token that bounds which agents (by their labels) and
 * EC2 instances (by their tags) the token can ever act on. The syntax is a bounded subset of
 * Kubernetes label selectors, parsed by a hand-written tokenizer (no regex on the untrusted text):
 *
 * - `key=value`, `key==value`: the label is present with this value;
 * - `key!=value`: the label is absent or has another value;
 * - `key`: the label is present (any value); `!key`: the label is absent;
 * - `key in (a,b)`: present with one of the values; `key notin (a,b)`: absent or none of them.
 *
 * Requirements are separated by commas and all must hold. Keys and values use the label characters
 * of `firedrill-agent --labels`: keys letters, digits and `. _ / : -` (starting and ending with a
 * letter or digit, at most 128); values letters, digits and `. _ : / @ + -` (1 to 253).
 */

/** Longest scope text, in characters. */
export const MAX_SCOPE_LENGTH = 1024;
/** Most requirements in one scope. */
export const MAX_SCOPE_REQUIREMENTS = 32;
/** Longest label key. */
export const MAX_SCOPE_KEY_LENGTH = 128;
/** Longest label value. */
export const MAX_SCOPE_VALUE_LENGTH = 253;

/** A requirement's operator. `exists` is a bare `key`, `absent` is `!key`. */
export type ScopeOperator = "=" | "!=" | "in" | "notin" | "exists" | "absent";

/** One requirement of a scope. */
export interface ScopeRequirement {
  readonly key: string;
  readonly operator: ScopeOperator;
  /** One value for `=` and `!=`, one or more for `in` and `notin`, none for `exists` and `absent`. */
  readonly values: readonly string[];
  /** The requirement in canonical form (`env=prod`, `tier in (db,cache)`), as messages quote it. */
  readonly text: string;
}

/** A parsed scope. */
export interface Scope {
  /** The scope as it was written (trimmed). */
  readonly text: string;
  /** Every requirement; a label set is in scope when all of them hold. */
  readonly requirements: readonly ScopeRequirement[];
}

/**
 * Thrown by {@link parseScope} when the text is not a valid scope. The message says what is wrong,
 * at which character (1-based), and how to write it instead.
 */
export class ScopeError extends Error {
  override readonly name = "ScopeError";
  constructor(
    message: string,
    /** The scope text that was refused. */
    readonly text: string,
    /** 1-based character position of the problem (`text.length + 1` for the end). */
    readonly position: number,
  ) {
    super(message);
  }
}

const EXAMPLE = "e.g. env=staging,tier in (web,api),!pci";

type TokenType = "word" | "=" | "!=" | "!" | "," | "(" | ")" | "end";

interface Token {
  type: TokenType;
  /** The word's text (for words), else the operator as written. */
  text: string;
  /** 0-based offset in the scope text. */
  at: number;
}

const isAlnum = (c: string): boolean => (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || (c >= "0" && c <= "9");
const isKeyChar = (c: string): boolean => isAlnum(c) || c === "." || c === "_" || c === "/" || c === ":" || c === "-";
const isValueChar = (c: string): boolean => isKeyChar(c) || c === "@" || c === "+";
const isSpace = (c: string): boolean => c === " " || c === "\t";

/** Splits the text into tokens: words (label characters), operators and punctuation. Linear. */
function tokenize(text: string, fail: (message: string, at: number) => never): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (isValueChar(c)) {
      const start = i;
      while (i < text.length && isValueChar(text[i]!)) i++;
      tokens.push({ type: "word", text: text.slice(start, i), at: start });
      continue;
    }
    if (c === "=") {
      const two = text[i + 1] === "=";
      tokens.push({ type: "=", text: two ? "==" : "=", at: i });
      i += two ? 2 : 1;
      continue;
    }
    if (c === "!") {
      const ne = text[i + 1] === "=";
      tokens.push({ type: ne ? "!=" : "!", text: ne ? "!=" : "!", at: i });
      i += ne ? 2 : 1;
      continue;
    }
    if (c === "," || c === "(" || c === ")") {
      tokens.push({ type: c, text: c, at: i });
      i++;
      continue;
    }
    const shown = c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f ? `U+${c.charCodeAt(0).toString(16).padStart(4, "0").toUpperCase()}` : JSON.stringify(c);
    fail(`${shown} is not allowed; keys and values use letters, digits and . _ / : @ + -, with = == != ! , ( ) between them (${EXAMPLE})`, i);
  }
  tokens.push({ type: "end", text: "", at: text.length });
  return tokens;
}

/** Why a word is not a valid label key, or undefined. */
function keyProblem(key: string): string | undefined {
  if (key.length > MAX_SCOPE_KEY_LENGTH) return `the key ${JSON.stringify(key.slice(0, 20))}… is longer than ${MAX_SCOPE_KEY_LENGTH} characters`;
  for (const c of key) {
    if (!isKeyChar(c)) return `the key ${JSON.stringify(key)} contains ${JSON.stringify(c)}; keys use letters, digits and . _ / : -`;
  }
  if (!isAlnum(key[0]!) || !isAlnum(key[key.length - 1]!)) {
    return `the key ${JSON.stringify(key)} must start and end with a letter or digit`;
  }
  return undefined;
}

/** Why a word is not a valid label value, or undefined. */
function valueProblem(value: string): string | undefined {
  if (value.length > MAX_SCOPE_VALUE_LENGTH) return `the value ${JSON.stringify(value.slice(0, 20))}… is longer than ${MAX_SCOPE_VALUE_LENGTH} characters`;
  return undefined;
}

function describeToken(t: Token): string {
  return t.type === "end" ? "the end of the scope" : `"${t.text}"`;
}

/** The canonical text of a requirement. */
function requirementText(key: string, operator: ScopeOperator, values: readonly string[]): string {
  switch (operator) {
    case "exists":
      return key;
    case "absent":
      return `!${key}`;
    case "=":
    case "!=":
      return `${key}${operator}${values[0] ?? ""}`;
    case "in":
    case "notin":
      return `${key} ${operator} (${values.join(",")})`;
  }
}

/**
 * Parses a scope such as `env!=prod,tier in (web,api)`.
 * Thrown when the text is invalid: {@link ScopeError} naming the problem, its character position
 * and the syntax to use; also when it is empty, longer than {@link MAX_SCOPE_LENGTH} characters or
 * has more than {@link MAX_SCOPE_REQUIREMENTS} requirements.
 */
export function parseScope(text: string): Scope {
  function fail(message: string, at: number): never {
    const where = at >= text.length ? `at character ${at + 1} (the end)` : `at character ${at + 1}`;
    throw new ScopeError(`invalid scope ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)} ${where}: ${message}`, text, at + 1);
  }
  if (typeof text !== "string") throw new ScopeError(`a scope must be a string of label requirements, ${EXAMPLE}`, String(text), 1);
  if (text.length > MAX_SCOPE_LENGTH) {
    fail(`the scope is ${text.length} characters long, over the limit of ${MAX_SCOPE_LENGTH}; use fewer or shorter requirements (e.g. key in (a,b) for several values)`, MAX_SCOPE_LENGTH);
  }
  const trimmed = text.trim();
  if (trimmed === "") fail(`the scope is empty; write at least one requirement, ${EXAMPLE}`, 0);
  const tokens = tokenize(text, fail);
  let pos = 0;
  const peek = (ahead = 0): Token => tokens[Math.min(pos + ahead, tokens.length - 1)]!;
  const next = (): Token => tokens[Math.min(pos++, tokens.length - 1)]!;

  const readKey = (): string => {
    const t = next();
    if (t.type !== "word") fail(`expected a label key, found ${describeToken(t)}; ${EXAMPLE}`, t.at);
    const problem = keyProblem(t.text);
    if (problem) fail(problem, t.at);
    return t.text;
  };
  const readValue = (after: string): string => {
    const t = next();
    if (t.type !== "word") fail(`expected a value after ${after}, found ${describeToken(t)}; write e.g. env${after === "(" || after === "," ? " in (staging,dev)" : `${after}staging`}`, t.at);
    const problem = valueProblem(t.text);
    if (problem) fail(problem, t.at);
    return t.text;
  };

  const requirements: ScopeRequirement[] = [];
  for (;;) {
    const first = peek();
    if (requirements.length === MAX_SCOPE_REQUIREMENTS) {
      fail(`more than ${MAX_SCOPE_REQUIREMENTS} requirements; merge values of one key with key in (a,b)`, first.at);
    }
    let key: string;
    let operator: ScopeOperator;
    let values: string[] = [];
    if (first.type === "!") {
      next();
      key = readKey();
      operator = "absent";
    } else {
      key = readKey();
      const op = peek();
      if (op.type === "=" || op.type === "!=") {
        next();
        operator = op.type;
        values = [readValue(op.text)];
      } else if (op.type === "word" && (op.text === "in" || op.text === "notin") && peek(1).type === "(") {
        next();
        const open = next();
        operator = op.text;
        for (;;) {
          values.push(readValue(values.length === 0 ? "(" : ","));
          const sep = next();
          if (sep.type === ")") break;
          if (sep.type !== ",") {
            fail(`expected "," or ")" in the list opened at character ${open.at + 1}, found ${describeToken(sep)}; write e.g. ${key} ${operator} (a,b)`, sep.at);
          }
        }
      } else if (op.type === "," || op.type === "end") {
        operator = "exists";
      } else if (op.type === "word" && (op.text === "in" || op.text === "notin")) {
        fail(`expected "(" after ${op.text}, found ${describeToken(peek(1))}; write e.g. ${key} ${op.text} (a,b)`, peek(1).at);
      } else {
        fail(
          `expected =, ==, !=, in (…), notin (…), "," or the end after the key "${key}", found ${describeToken(op)}; write e.g. ${key}=value, ${key} in (a,b), or ${key} alone for "has the label"`,
          op.at,
        );
      }
    }
    requirements.push({ key, operator, values, text: requirementText(key, operator, values) });
    const sep = next();
    if (sep.type === "end") break;
    if (sep.type !== ",") fail(`expected "," between requirements or the end, found ${describeToken(sep)}; separate requirements with commas, ${EXAMPLE}`, sep.at);
    if (peek().type === "end") fail(`a requirement is missing after the last ","; remove the trailing comma`, peek().at);
  }
  return { text: trimmed, requirements };
}

/** Whether labels satisfy one requirement. A missing label satisfies `!=`, `notin` and `!key`. */
function holds(requirement: ScopeRequirement, labels: Readonly<Record<string, string>>): boolean {
  const present = Object.hasOwn(labels, requirement.key);
  const value = present ? labels[requirement.key] : undefined;
  switch (requirement.operator) {
    case "exists":
      return present;
    case "absent":
      return !present;
    case "=":
    case "in":
      return value !== undefined && requirement.values.includes(value);
    case "!=":
    case "notin":
      return value === undefined || !requirement.values.includes(value);
  }
}

/**
 * Which requirement of the scope refuses these labels (an agent's labels, or an EC2 instance's
 * tags): the canonical text of the first that does not hold (e.g. `env!=prod`), or undefined when
 * every requirement holds.
 *
 * As in Kubernetes, a label that is missing satisfies `key!=value` and `key notin (…)` (and
 * `!key`): `env!=prod` admits hosts without an `env` label. Require the label as well
 * (`env,env!=prod`) to refuse them.
 */
export function scopeViolation(scope: Scope, labels: Readonly<Record<string, string>>): string | undefined {
  return scope.requirements.find((r) => !holds(r, labels))?.text;
}

/** The scope in canonical form: requirements in their canonical text, joined by commas. */
export function formatScope(scope: Scope): string {
  return scope.requirements.map((r) => r.text).join(",");
}

/** Labels (or tags) for messages: `env=prod, app=web`, sorted by key, at most `max` shown. */
export function formatLabels(labels: Readonly<Record<string, string>>, max = 8): string {
  const pairs = Object.entries(labels)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`);
  if (pairs.length === 0) return "no labels";
  return pairs.length <= max ? pairs.join(", ") : `${pairs.slice(0, max).join(", ")} and ${pairs.length - max} more`;
}
