/**
 * YAML source handling shared by experiment and policy files: parsing with line numbers, finding
 * the line of a path, turning zod issues into {@link SpecIssue}s, and formatting them.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document, Node } from "yaml";
import type { z } from "zod";
import type { SpecIssue } from "./types.js";

/** A path into the document: keys and list indexes. */
export type SourcePath = readonly (string | number)[];

/** An issue before it is given a line. */
export interface SourceIssue {
  path: SourcePath;
  message: string;
  /** Where to point the line at, when not `path` itself (e.g. a cycle is reported on `steps`). */
  linePath?: SourcePath;
}

/** A parsed YAML file. */
export interface YamlSource {
  /** The plain data, or undefined when the file did not parse. */
  data: unknown;
  /** Syntax errors, with line and column. */
  syntaxIssues: SpecIssue[];
  /** The 1-based line of a path: the line of its key (or list item), else of its nearest ancestor. */
  lineOf(path: SourcePath): number;
  /** The source offset the line of {@link lineOf} comes from (orders issues within a line). */
  offsetOf(path: SourcePath): number;
}

/** Parses YAML text, keeping node positions. */
export function readYaml(text: string): YamlSource {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const syntaxIssues: SpecIssue[] = doc.errors.map((err) => {
    const pos = lineCounter.linePos(err.pos[0]);
    const line = Math.max(pos.line, 1);
    const column = Math.max(pos.col, 1);
    return { path: "", line, column, message: `YAML syntax error: ${firstLine(err.message)}` };
  });
  const lineOf = (offset: number): number => Math.max(lineCounter.linePos(offset).line, 1);
  return {
    data: syntaxIssues.length > 0 ? undefined : doc.toJS({ maxAliasCount: 100 }),
    syntaxIssues,
    lineOf: (path) => lineOf(locate(doc, path)),
    offsetOf: (path) => locate(doc, path),
  };
}

function firstLine(message: string): string {
  return message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "");
}

/** The offset of the key (or list item) at `path`, else of its nearest ancestor. */
function locate(doc: Document, path: SourcePath): number {
  const offsetAt = (node: unknown): number | undefined => (node as Node | null | undefined)?.range?.[0];
  let node: unknown = doc.contents;
  let offset = offsetAt(node) ?? 0;
  for (const segment of path) {
    if (isAlias(node)) node = node.resolve(doc);
    if (isMap(node)) {
      const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(segment));
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
 * Gives each issue its user-facing path and line, drops duplicates, and orders them by line.
 * `dropPrefix` is removed from the front of paths (experiments report `steps[0]`, not `spec.steps[0]`).
 */
export function toSpecIssues(source: YamlSource, issues: readonly SourceIssue[], dropPrefix?: string): SpecIssue[] {
  const seen = new Set<string>();
  const out: (SpecIssue & { offset: number; order: number })[] = [];
  issues.forEach((issue, order) => {
    const shown = dropPrefix !== undefined && issue.path[0] === dropPrefix && issue.path.length > 1 ? issue.path.slice(1) : issue.path;
    const path = formatPath(shown);
    const key = `${path}\u0000${issue.message}`;
    if (seen.has(key)) return;
    seen.add(key);
    const at = issue.linePath ?? issue.path;
    out.push({ path, line: source.lineOf(at), message: issue.message, offset: source.offsetOf(at), order });
  });
  out.sort((a, b) => a.offset - b.offset || a.order - b.order);
  return out.map(({ offset: _offset, order: _order, ...issue }) => issue);
}

/** Formats an issue as `<file>:<line>: <path>: <message>` (`<file>:<line>:<column>: ...` for syntax errors). */
export function formatSpecIssue(issue: SpecIssue, file = "<input>"): string {
  const where = issue.line === undefined ? file : `${file}:${issue.line}${issue.column !== undefined ? `:${issue.column}` : ""}`;
  return `${where}: ${issue.path === "" ? "" : `${issue.path}: `}${issue.message}`;
}
