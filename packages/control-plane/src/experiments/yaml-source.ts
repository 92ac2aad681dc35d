/**
 * YAML source handling shared by experiment and policy files: parsing with line numbers, finding
 * the line of a path, turning zod issues into {@link SpecIssue}s, and formatting them.
 *
 * Reading is bounded whatever the input: the size is checked first, nodes and nesting are counted
 * while the text is tokenized (before the document is built), aliases are expanded only within
 * the node budget, and every lookup afterwards (duplicate keys, the line of a path) goes through
 * indexes built in one pass. See docs/spec/experiment.md, "Limits".
 */
import { Composer, CST, isAlias, isMap, isScalar, isSeq, Lexer, LineCounter, Parser } from "yaml";
import type { Alias, Document, Node, Pair, YAMLMap } from "yaml";
import type { z } from "zod";
import type { SpecIssue } from "./types.js";

/** Largest file read, in bytes of UTF-8 (experiments posted to the API, policy files). */
export const MAX_SPEC_BYTES = 256 * 1024;
/** Most YAML nodes (keys, values, list items, with aliases counted as what they expand to). */
export const MAX_SPEC_NODES = 10_000;
/** Deepest nesting of lists and mappings. */
export const MAX_SPEC_DEPTH = 32;
/** Most aliases (`*name`) in a file. */
export const MAX_SPEC_ALIASES = 100;
/** Most problems listed; the rest are counted in a last line. */
export const MAX_SPEC_ISSUES = 50;
/** Longest message of one problem, in characters (values quoted in messages are shortened too). */
const MAX_MESSAGE_LENGTH = 500;

/** What an issue about the whole file shows as its path. */
export const FILE_PATH_LABEL = "(file)";
/** What an issue at the root of the document shows as its path. */
export const TOP_LEVEL_PATH_LABEL = "(top level)";

/** A path into the document: keys and list indexes. */
export type SourcePath = readonly (string | number)[];

/** An issue before it is given a line. */
export interface SourceIssue {
  path: SourcePath;
  message: string;
  /** Where to point the line at, when not `path` itself (e.g. a cycle is reported on `steps`). */
  linePath?: SourcePath;
  /** The source offset the issue is at, when known exactly (syntax errors, limits). */
  offset?: number;
  /** Report the column of `offset` too (syntax errors). */
  column?: boolean;
  /** Shown instead of the path (e.g. {@link FILE_PATH_LABEL}). */
  label?: string;
}

/** A parsed YAML file. */
export interface YamlSource {
  /** The plain data, or undefined when the file did not parse. */
  data: unknown;
  /**
   * What kept the file from being read: syntax errors (with line and column, and the path of the
   * node they are in) and broken limits (size, nodes, depth, aliases, duplicate keys). Ordered by
   * line, at most {@link MAX_SPEC_ISSUES} plus a last line counting the rest.
   */
  syntaxIssues: SpecIssue[];
  /** The 1-based line of a path: the line of its key (or list item), else of its nearest ancestor. */
  lineOf(path: SourcePath): number;
  /** The source offset the line of {@link lineOf} comes from (orders issues within a line). */
  offsetOf(path: SourcePath): number;
  /** The 1-based line and column of a source offset. */
  positionOf(offset: number): { line: number; column: number };
}

/** Options of {@link readYaml}. */
export interface ReadYamlOptions {
  /** Removed from the front of the paths of syntax issues (experiments report `steps[0]`, not `spec.steps[0]`). */
  dropPrefix?: string;
}

/** Lexical tokens that each stand for at most two nodes (a key or value, an item, a collection). */
const NODE_TOKENS = new Set<string>([
  "scalar",
  "single-quoted-scalar",
  "double-quoted-scalar",
  "block-scalar-header",
  "alias",
  "flow-map-start",
  "flow-seq-start",
  "seq-item-ind",
  "explicit-key-ind",
  "map-value-ind",
]);

/**
 * Stop tokenizing past this many node tokens: the built document would hold more than
 * {@link MAX_SPEC_NODES} nodes (each node token gives at least half a node: `- a` is two tokens
 * for one item, `k: v` three for two nodes).
 */
const NODE_TOKEN_GUARD = 2 * MAX_SPEC_NODES + 64;
/** The parser's stack holds the document, each open collection, and the token at hand. */
const PARSER_STACK_GUARD = MAX_SPEC_DEPTH + 3;

/** Formats a byte count as KiB for messages. */
export function formatKib(bytes: number): string {
  const kib = bytes / 1024;
  return `${Number.isInteger(kib) ? kib : kib.toFixed(1)} KiB`;
}

/** Shortens a message to {@link MAX_MESSAGE_LENGTH} characters. */
function clip(message: string): string {
  return message.length <= MAX_MESSAGE_LENGTH ? message : `${message.slice(0, MAX_MESSAGE_LENGTH - 1)}…`;
}

/** Thrown inside the walk when a limit is reached: reading stops there. */
class LimitReached extends Error {}

/**
 * Parses YAML text, keeping node positions, within the limits above. Never throws for any input:
 * what is wrong is in `syntaxIssues`.
 */
export function readYaml(text: string, options: ReadYamlOptions = {}): YamlSource {
  const lineCounter = new LineCounter();
  const positionOf = (offset: number) => {
    const pos = lineCounter.linePos(offset);
    return { line: Math.max(pos.line, 1), column: Math.max(pos.col, 1) };
  };
  const unread = (issues: SourceIssue[], doc?: Document): YamlSource => {
    const source: YamlSource = {
      data: undefined,
      syntaxIssues: [],
      lineOf: (path) => positionOf(doc ? scanOffset(doc, path) : 0).line,
      offsetOf: (path) => (doc ? scanOffset(doc, path) : 0),
      positionOf,
    };
    source.syntaxIssues = toSpecIssues(source, issues, options.dropPrefix);
    return source;
  };

  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_SPEC_BYTES) {
    return unread([
      {
        path: [],
        label: FILE_PATH_LABEL,
        message: `is ${formatKib(bytes)} (${bytes} bytes); a file may be at most ${formatKib(MAX_SPEC_BYTES)} (${MAX_SPEC_BYTES} bytes): split the experiment into smaller ones, or move long text out of it`,
      },
    ]);
  }

  // Tokenize and build the concrete syntax tree, counting nodes and nesting as the tokens come:
  // a file past the limits is refused before its document is built.
  const parser = new Parser(lineCounter.addNewLine);
  lineCounter.addNewLine(0);
  const tokens: CST.Token[] = [];
  let nodeTokens = 0;
  let scalarSourceNext = false;
  let stopped: SourceIssue | undefined;
  for (const lexeme of new Lexer().lex(text)) {
    if (scalarSourceNext) {
      scalarSourceNext = false;
    } else {
      const type = CST.tokenType(lexeme);
      if (type === "scalar") scalarSourceNext = true;
      if (type && NODE_TOKENS.has(type)) nodeTokens++;
    }
    const offset = parser.offset;
    for (const token of parser.next(lexeme)) tokens.push(token);
    if (nodeTokens > NODE_TOKEN_GUARD) stopped = { path: [], label: FILE_PATH_LABEL, offset, message: tooManyNodes() };
    else if (parser.stack.length > PARSER_STACK_GUARD) stopped = { path: [], label: FILE_PATH_LABEL, offset, message: tooDeep() };
    if (stopped) break;
  }
  for (const token of parser.end()) tokens.push(token);

  // uniqueKeys is off: the library compares each key with every earlier one (quadratic); the
  // walk below checks keys with one index per mapping. A file stopped at a limit is built only
  // up to there (bounded), for the syntax errors before that point.
  const docs = [...new Composer({ uniqueKeys: false, prettyErrors: false }).compose(tokens, true, stopped?.offset ?? text.length)];
  const doc = docs[0]!;
  const syntax: SourceIssue[] = [];
  for (const err of doc.errors) {
    if (stopped && err.pos[0] >= stopped.offset!) continue;
    syntax.push({ path: [], offset: err.pos[0], column: true, message: `YAML syntax error: ${firstLine(err.message)}` });
  }
  const second = docs[1];
  if (second) {
    syntax.push({
      path: [],
      label: FILE_PATH_LABEL,
      offset: second.range[0],
      message: "a second YAML document starts here (after ---); an experiment file holds one document: remove the --- line, or split the file",
    });
  }
  if (syntax.length > 0) {
    // Only the issues shown get a path (each a walk down the document): the work stays bounded.
    syntax.sort((a, b) => a.offset! - b.offset!);
    const shown = syntax.slice(0, MAX_SPEC_ISSUES);
    for (const issue of shown) if (issue.label === undefined) issue.path = pathAt(doc, issue.offset!);
    if (!stopped) return unread([...shown, ...syntax.slice(MAX_SPEC_ISSUES)], doc);
    // Broken indentation can look like deep nesting to the parser: the syntax errors are the news,
    // and the last line says where reading stopped.
    const listed = shown.slice(0, MAX_SPEC_ISSUES - 1);
    const more = syntax.length > listed.length ? ` (${syntax.length} in all, the first ${listed.length} listed)` : "";
    return unread(
      [...listed, { path: [], label: FILE_PATH_LABEL, offset: stopped.offset!, message: `reading stopped here, after the syntax errors above${more}: fix them and check again` }],
      doc,
    );
  }
  if (stopped) return unread([stopped]);

  const index = indexDocument(doc, (offset) => positionOf(offset).line);
  if (index.issues.length > 0) return unread(index.issues, doc);

  const locate = (path: SourcePath): number => indexedOffset(doc, index, path);
  let data: unknown;
  try {
    // Aliases were counted as what they expand to, within the node limit.
    data = doc.toJS({ maxAliasCount: -1 });
  } catch (err) {
    return unread([{ path: [], offset: 0, message: `cannot be read: ${firstLine((err as Error).message)}` }], doc);
  }
  return { data, syntaxIssues: [], lineOf: (path) => positionOf(locate(path)).line, offsetOf: locate, positionOf };
}

function tooManyNodes(): string {
  return `has more than ${MAX_SPEC_NODES.toLocaleString("en-US")} YAML nodes (keys, values and list items, aliases counted as what they expand to) by this line; an experiment needs far fewer: split it into smaller experiments`;
}

function tooDeep(): string {
  return `nests lists and mappings deeper than ${MAX_SPEC_DEPTH} levels here; an experiment needs far fewer: flatten the structure`;
}

function firstLine(message: string): string {
  return message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
}

/** What one pass over the document found: an index of every mapping's keys, and what is wrong. */
interface DocumentIndex {
  /** Each mapping's pairs by key (the first of duplicates). */
  maps: Map<YAMLMap, Map<string, Pair>>;
  /** The node each alias refers to. */
  aliases: Map<Alias, Node>;
  issues: SourceIssue[];
}

/** The key of a pair as a string, as `toJS` makes it; undefined for a list or mapping as key. */
function keyText(key: unknown, aliases: Map<Alias, Node>): string | undefined {
  const node = isAlias(key) ? aliases.get(key) : key;
  if (node === null || node === undefined) return "";
  if (isScalar(node)) return node.value === null || node.value === undefined ? "" : String(node.value);
  return undefined;
}

/**
 * One pass over the document, in source order: counts nodes (an alias as what it expands to),
 * nesting and aliases against the limits, resolves each alias to its anchor, finds duplicate and
 * non-scalar keys, and indexes every mapping's keys. Stops at the first limit reached.
 */
function indexDocument(doc: Document, lineAt: (offset: number) => number): DocumentIndex {
  const maps = new Map<YAMLMap, Map<string, Pair>>();
  const aliases = new Map<Alias, Node>();
  const issues: SourceIssue[] = [];
  const anchors = new Map<string, Node>();
  const sizes = new Map<Node, number>();
  const open = new Set<Node>();
  const path: (string | number)[] = [];
  let expanded = 0;
  let aliasCount = 0;
  const at = (node: unknown): number => (node as Node | null | undefined)?.range?.[0] ?? 0;
  const limit = (node: unknown, message: string): never => {
    issues.push({ path: [...path], offset: at(node), message });
    throw new LimitReached();
  };
  const count = (node: unknown, n: number): void => {
    expanded += n;
    if (expanded > MAX_SPEC_NODES) limit(node, tooManyNodes());
  };

  const visit = (node: unknown, depth: number): void => {
    if (node === null || node === undefined) return;
    if (isAlias(node)) {
      aliasCount++;
      if (aliasCount > MAX_SPEC_ALIASES) {
        limit(node, `is alias number ${aliasCount} (*${node.source}); a file may use at most ${MAX_SPEC_ALIASES} aliases: write the values out, or split the experiment`);
      }
      const target = anchors.get(node.source);
      if (target === undefined) {
        issues.push({
          path: [...path],
          offset: at(node),
          message: `the alias *${node.source} refers to no anchor: define &${node.source} on a value before this line (an alias can only refer back to an anchor above it)`,
        });
        count(node, 1);
      } else if (open.has(target)) {
        issues.push({
          path: [...path],
          offset: at(node),
          message: `the alias *${node.source} is inside the value anchored as &${node.source} (line ${lineAt(at(target))}), so that value would contain itself: refer to a value defined outside it`,
        });
        count(node, 1);
      } else {
        aliases.set(node, target);
        count(node, sizes.get(target) ?? 1);
      }
      return;
    }
    if (depth > MAX_SPEC_DEPTH) limit(node, tooDeep());
    const n = node as Node;
    const before = expanded;
    if (n.anchor) anchors.set(n.anchor, n);
    count(node, 1);
    if (isMap(node)) {
      open.add(n);
      const keys = new Map<string, Pair>();
      for (const pair of node.items) {
        visit(pair.key, depth + 1);
        const key = keyText(pair.key, aliases);
        if (key === undefined) {
          issues.push({ path: [...path], offset: at(pair.key), message: "has a list or mapping as a key; keys must be plain strings (e.g. name: value)" });
          continue;
        }
        const first = keys.get(key);
        if (first !== undefined) {
          issues.push({
            path: [...path, key],
            offset: at(pair.key),
            message: `is given twice in this mapping (first on line ${lineAt(at(first.key))}); keep one`,
          });
        } else {
          keys.set(key, pair);
        }
        path.push(key);
        visit(pair.value, depth + 1);
        path.pop();
      }
      maps.set(node, keys);
      open.delete(n);
    } else if (isSeq(node)) {
      open.add(n);
      node.items.forEach((item, i) => {
        path.push(i);
        visit(item, depth + 1);
        path.pop();
      });
      open.delete(n);
    }
    if (n.anchor) sizes.set(n, expanded - before);
  };

  try {
    visit(doc.contents, 1);
  } catch (err) {
    if (!(err instanceof LimitReached)) throw err;
  }
  return { maps, aliases, issues };
}

/** Finds the pair of `key` in a mapping (through an index, or by a scan). */
type PairLookup = (map: YAMLMap, key: string) => Pair | undefined;

/** The offset of the key (or list item) at `path`, else of its nearest ancestor. */
function offsetOfPath(doc: Document, path: SourcePath, pairOf: PairLookup, resolveAlias: (node: unknown) => unknown = (n) => n): number {
  const offsetAt = (node: unknown): number | undefined => (node as Node | null | undefined)?.range?.[0];
  let node: unknown = doc.contents;
  let offset = offsetAt(node) ?? 0;
  for (const segment of path) {
    if (isAlias(node)) node = resolveAlias(node);
    if (isMap(node)) {
      const pair = pairOf(node, String(segment));
      if (!pair) break;
      offset = offsetAt(pair.key) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment];
      if (item === undefined) break;
      offset = offsetAt(item) ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset;
}

/** The offset at `path` through the index built in one pass (linear). */
function indexedOffset(doc: Document, index: DocumentIndex, path: SourcePath): number {
  return offsetOfPath(doc, path, (map, key) => index.maps.get(map)?.get(key), (alias) => index.aliases.get(alias as Alias));
}

/**
 * The offset at `path` without an index (a document with errors): a scan per level, used only for
 * the few issues shown.
 */
function scanOffset(doc: Document, path: SourcePath): number {
  return offsetOfPath(doc, path, (map, key) => map.items.find((p) => isScalar(p.key) && String(p.key.value) === key));
}

/** The path of the innermost key or list item whose text holds `offset` (the path so far of a syntax error). */
function pathAt(doc: Document, offset: number): (string | number)[] {
  const path: (string | number)[] = [];
  const start = (node: unknown): number => (node as Node | null | undefined)?.range?.[0] ?? Number.POSITIVE_INFINITY;
  const end = (node: unknown): number => (node as Node | null | undefined)?.range?.[2] ?? Number.NEGATIVE_INFINITY;
  let node: unknown = doc.contents;
  for (let depth = 0; depth <= MAX_SPEC_DEPTH; depth++) {
    if (isMap(node)) {
      let found: Pair | undefined;
      for (const pair of node.items) {
        if (start(pair.key) <= offset || (pair.key === null && start(pair.value) <= offset)) found = pair;
        else break;
      }
      if (!found || !isScalar(found.key) || Math.max(end(found.key), end(found.value)) < offset) break;
      path.push(String(found.key.value));
      node = found.value;
    } else if (isSeq(node)) {
      let found = -1;
      for (let i = 0; i < node.items.length; i++) {
        if (start(node.items[i]) <= offset) found = i;
        else break;
      }
      if (found < 0 || end(node.items[found]) < offset) break;
      path.push(found);
      node = node.items[found];
    } else {
      break;
    }
  }
  return path;
}

/** Formats a path as the user reads it: `steps[2].params.load`, `labels["app.kubernetes.io/name"]`. */
export function formatPath(path: SourcePath): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === "" ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** Splits a formatted path (`steps[2].params.ports[0]`) back into segments. */
export function parsePath(text: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const m of text.matchAll(/\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|([^.[\]]+)/g)) {
    if (m[1] !== undefined) out.push(Number(m[1]));
    else if (m[2] !== undefined) out.push(JSON.parse(`"${m[2]}"`) as string);
    else if (m[3] !== undefined) out.push(m[3]);
  }
  return out;
}

/** Turns zod issues into source issues: one per unknown field, nested key issues unwrapped. */
export function fromZodIssues(issues: readonly z.core.$ZodIssue[]): SourceIssue[] {
  const out: SourceIssue[] = [];
  for (const issue of issues) {
    const path = issue.path.map((p) => (typeof p === "number" ? p : String(p)));
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) out.push({ path: [...path, key], message: `unknown field ${JSON.stringify(key)}; ${issue.message}` });
    } else if (issue.code === "invalid_key") {
      const key = path[path.length - 1];
      const inner = issue.issues[0]?.message ?? "is not allowed";
      out.push({ path, message: inner.startsWith(JSON.stringify(key)) ? inner : `${JSON.stringify(key)}: ${inner}` });
    } else {
      out.push({ path, message: issue.message });
    }
  }
  return out;
}

/**
 * Gives each issue its user-facing path and line, drops duplicates, orders them by line, and keeps
 * the first {@link MAX_SPEC_ISSUES} (a last issue counts the rest).
 * `dropPrefix` is removed from the front of paths (experiments report `steps[0]`, not `spec.steps[0]`).
 */
export function toSpecIssues(source: Pick<YamlSource, "offsetOf" | "positionOf">, issues: readonly SourceIssue[], dropPrefix?: string): SpecIssue[] {
  const seen = new Set<string>();
  const out: { issue: SourceIssue; path: string; offset: number; order: number }[] = [];
  issues.forEach((issue, order) => {
    const shown = dropPrefix !== undefined && issue.path[0] === dropPrefix && issue.path.length > 1 ? issue.path.slice(1) : issue.path;
    const path = issue.label ?? (formatPath(shown) || TOP_LEVEL_PATH_LABEL);
    const key = `${path}\u0000${issue.message}\u0000${issue.offset ?? ""}`;
    if (seen.has(key)) return;
    seen.add(key);
    const offset = issue.offset ?? source.offsetOf(issue.linePath ?? issue.path);
    out.push({ issue, path, offset, order });
  });
  out.sort((a, b) => a.offset - b.offset || a.order - b.order);
  const shown = out.slice(0, MAX_SPEC_ISSUES).map(({ issue, path, offset }): SpecIssue => {
    const { line, column } = source.positionOf(offset);
    const noLine = issue.label === FILE_PATH_LABEL && issue.offset === undefined;
    return { path, ...(noLine ? {} : { line }), ...(issue.column ? { column } : {}), message: clip(issue.message) };
  });
  const omitted = out.length - shown.length;
  if (omitted > 0) {
    const next = source.positionOf(out[MAX_SPEC_ISSUES]!.offset).line;
    shown.push({
      path: FILE_PATH_LABEL,
      message: `and ${omitted} more ${omitted === 1 ? "problem" : "problems"} from line ${next} on (only the first ${MAX_SPEC_ISSUES} are listed): fix these and check again`,
      omitted,
    });
  }
  return shown;
}

/** How many problems `issues` stand for: each issue, plus the ones a last "and N more" line counts. */
export function countProblems(issues: readonly SpecIssue[]): number {
  return issues.reduce((n, issue) => n + (issue.omitted ?? 1), 0);
}

/** Formats an issue as `<file>:<line>: <path>: <message>` (`<file>:<line>:<column>: ...` for syntax errors). */
export function formatSpecIssue(issue: SpecIssue, file = "<input>"): string {
  const where = issue.line === undefined ? file : `${file}:${issue.line}${issue.column !== undefined ? `:${issue.column}` : ""}`;
  return `${where}: ${issue.path === "" ? "" : `${issue.path}: `}${issue.message}`;
}
