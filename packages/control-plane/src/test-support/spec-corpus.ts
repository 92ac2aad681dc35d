/**
 * Test and bench support (not part of the package's build): hostile and maximal experiment texts,
 * generated, for the spec-flood test and `pnpm bench spec-flood`.
 */
import { MAX_SPEC_BYTES, MAX_SPEC_NODES } from "../experiments/yaml-source.js";
import { MAX_STEPS, MAX_TARGET_GROUPS } from "../experiments/spec-schema.js";

/** One input and what the API must answer. */
export interface CorpusCase {
  name: string;
  /** The `spec` field (a string, or something else for malformed bodies). */
  spec: unknown;
  /** A raw body instead of `{ spec }` (bad UTF-8), sent as application/json. */
  rawBody?: Buffer;
  /** Statuses allowed on POST /api/v1/plan. */
  status: number[];
  /** The error message must match (the limit or the problem, with its place). */
  message?: RegExp;
}

/** The valid head every generated experiment starts from; its target group matches no agent. */
export const HEAD = `apiVersion: firedrill/v1
kind: Experiment
metadata:
  name: flood
spec:
  hypothesis: nothing breaks
  targets:
    web:
      selector: { labels: { app: matches-nothing } }
      mode: { count: 1 }
  steps:
    - name: burn
      fault: cpu-burn
      target: web
      duration: 30s
      params: { load: 50 }
`;

/** Lines from `line(i)` appended to `head` while the result stays within `bytes`. */
export function fill(head: string, line: (i: number) => string, bytes = MAX_SPEC_BYTES, tail = ""): string {
  const parts = [head];
  let size = Buffer.byteLength(head) + Buffer.byteLength(tail);
  for (let i = 0; ; i++) {
    const next = line(i);
    const n = Buffer.byteLength(next);
    if (size + n > bytes) break;
    parts.push(next);
    size += n;
  }
  parts.push(tail);
  return parts.join("");
}

/**
 * A valid experiment at the limits: {@link MAX_TARGET_GROUPS} target groups, {@link MAX_STEPS}
 * steps chained by startAfter, metadata labels up to about {@link MAX_SPEC_NODES} nodes, and a
 * description that fills the file to {@link MAX_SPEC_BYTES}. `seed` makes each one different.
 */
export function maximalSpec(seed = 0): string {
  const lines: string[] = ["apiVersion: firedrill/v1", "kind: Experiment", "metadata:", `  name: maximal-${seed}`, "  labels:"];
  let nodes = 8;
  const targets = ["spec:", "  hypothesis: the control plane stays responsive", "  targets:"];
  for (let t = 0; t < MAX_TARGET_GROUPS; t++) {
    targets.push(`    t${t}:`, `      selector: { labels: { app: none-${seed}-${t} } }`, "      mode: { count: 1 }");
  }
  nodes += MAX_TARGET_GROUPS * 12 + 6;
  const steps = ["  steps:"];
  for (let s = 0; s < MAX_STEPS; s++) {
    steps.push(
      `    - { name: s${s}, fault: cpu-burn, target: t${s % MAX_TARGET_GROUPS}, duration: 30s, params: { load: 50 }${s > 0 ? `, startAfter: [s${s - 1}]` : ""} }`,
    );
  }
  nodes += MAX_STEPS * 16 + 2;
  const labelCount = Math.floor((MAX_SPEC_NODES - nodes - 40) / 2);
  for (let l = 0; l < labelCount; l++) lines.push(`    l${l}: v${seed}`);
  const body = [...lines, "  description: |", "    DESCRIPTION", ...targets, ...steps, ""].join("\n");
  const room = MAX_SPEC_BYTES - Buffer.byteLength(body) + "DESCRIPTION".length - 1;
  const description = "x".repeat(Math.max(0, room));
  return body.replace("DESCRIPTION", description);
}

/** `n` nested flow sequences: `[[[...]]]`. */
const deepFlow = (n: number) => `${HEAD.replace("load: 50", `load: ${"[".repeat(n)}${"]".repeat(n)}`)}`;

/** Mappings nested by indentation until the file is full. */
function deepIndent(): string {
  let out = "apiVersion: firedrill/v1\nx:\n";
  for (let d = 1; ; d++) {
    const line = `${" ".repeat(d)}a:\n`;
    if (out.length + line.length > MAX_SPEC_BYTES) return out;
    out += line;
  }
}

/** The classic: nine aliases of nine aliases of … (9^7 nodes once expanded). */
function billionLaughs(): string {
  const lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"];
  for (let i = 1; i < 8; i++) lines.push(`a${i}: &a${i} [${Array.from({ length: 9 }, () => `*a${i - 1}`).join(", ")}]`);
  return `${lines.join("\n")}\n`;
}

/** Every case, at the limits and past them. Each must get a 4xx with a precise message, never a 500. */
export function corpus(): CorpusCase[] {
  return [
    { name: "maximal valid experiment", spec: maximalSpec(1), status: [200] },
    { name: "past 256 KiB", spec: fill(HEAD, (i) => `  x${i}: 1\n`, MAX_SPEC_BYTES + 4096), status: [413], message: /at most 256 KiB/ },
    { name: "issue 10: 312 KB of keys", spec: fill(HEAD, (i) => `  k${i}: v\n`, 312 * 1000), status: [413], message: /at most 256 KiB/ },
    { name: "body past the endpoint's limit", spec: "\n".repeat(700 * 1024), status: [413], message: /larger than 576 KiB.*256 KiB/ },
    { name: "60k keys in 256 KiB", spec: fill("a:\n", (i) => ` k${i}: 1\n`), status: [400], message: /more than 10,000 YAML nodes/ },
    {
      name: "labels past the node limit",
      spec: HEAD.replace("  name: flood\n", `  name: flood\n  labels:\n${Array.from({ length: 6000 }, (_, i) => `    l${i}: v\n`).join("")}`),
      status: [400],
      message: /more than 10,000 YAML nodes/,
    },
    { name: "wide flow sequence", spec: `a: [${"1,".repeat(40_000)}1]\n`, status: [400], message: /more than 10,000 YAML nodes/ },
    { name: "deep flow nesting", spec: deepFlow(100_000), status: [400], message: /deeper than 32 levels/ },
    { name: "deep flow nesting, 40 levels", spec: deepFlow(40), status: [400], message: /deeper than 32 levels/ },
    { name: "deep block nesting (- - - …)", spec: `${"- ".repeat(100_000)}x\n`, status: [400], message: /deeper than 32 levels|syntax error/ },
    { name: "deep indentation", spec: deepIndent(), status: [400], message: /deeper than 32 levels/ },
    { name: "billion laughs", spec: billionLaughs(), status: [400], message: /more than 10,000 YAML nodes/ },
    { name: "101 aliases", spec: `a: &a x\nb: [${Array.from({ length: 101 }, () => "*a").join(", ")}]\n`, status: [400], message: /at most 100 aliases/ },
    { name: "alias to no anchor", spec: HEAD.replace("load: 50", "load: *nowhere"), status: [400], message: /\*nowhere refers to no anchor/ },
    { name: "alias inside its own anchor", spec: "a: &loop [1, *loop]\n", status: [400], message: /would contain itself/ },
    { name: "duplicate keys", spec: fill(HEAD, () => "  x: 1\n", 16 * 1024), status: [400], message: /given twice in this mapping \(first on line 17\)/ },
    { name: "a list as a key", spec: "[a, b]: 1\n", status: [400], message: /list or mapping as a key/ },
    { name: "two documents", spec: `${HEAD}---\n${HEAD}`, status: [400], message: /second YAML document/ },
    { name: "syntax errors on many lines", spec: fill(HEAD, (i) => `  "k${i}: 1\n  - [\n`, 64 * 1024), status: [400], message: /syntax error/ },
    { name: "unknown fields past the issue limit", spec: fill(HEAD, (i) => `  u${i}: 1\n`, 20 * 1024), status: [400], message: /unknown field/ },
    { name: "long string where a name goes", spec: HEAD.replace("name: flood", `name: ${"n".repeat(200_000)}`), status: [400], message: /\(200000 characters\) is not a valid experiment name/ },
    { name: "long hypothesis (valid)", spec: HEAD.replace("hypothesis: nothing breaks", `hypothesis: ${"h".repeat(200_000)}`), status: [200] },
    { name: "huge number", spec: HEAD.replace("load: 50", "load: 1e400"), status: [400], message: /\.inf is not a finite number/ },
    { name: "huge integer count", spec: HEAD.replace("count: 1", "count: 99999999999999999999999999"), status: [200, 400] },
    { name: "lone surrogate", spec: HEAD.replace("name: flood", "name: \ud800flood"), status: [400], message: /not a valid experiment name/ },
    {
      name: "bad UTF-8 in the body",
      spec: undefined,
      rawBody: Buffer.concat([Buffer.from(JSON.stringify({ spec: HEAD }).slice(0, -2)), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]),
      status: [400],
    },
    { name: "tags", spec: HEAD.replace("load: 50", "load: !!binary aGVsbG8=").replace("count: 1", "count: !custom 1"), status: [400] },
    { name: "YAML 1.1 merge keys", spec: `%YAML 1.1\n---\nbase: &b { x: 1 }\n${Array.from({ length: 50 }, (_, i) => `m${i}: { <<: *b }`).join("\n")}\n`, status: [400] },
    { name: "too many steps", spec: `${HEAD}${Array.from({ length: MAX_STEPS }, (_, i) => `    - { name: w${i}, wait: 1s }\n`).join("")}`, status: [400], message: /at most 200/ },
    { name: "empty spec", spec: "", status: [400], message: /spec must be a non-empty string/ },
    { name: "spec is not a string", spec: 42, status: [400], message: /spec must be a non-empty string/ },
    { name: "a scalar document", spec: "just text", status: [400], message: /not a mapping/ },
  ];
}

/** Line of `needle` in `text` (1-based), for expectations. */
export function lineOfText(text: string, needle: string): number {
  return text.slice(0, text.indexOf(needle)).split("\n").length;
}
