/**
 * The parameters of `dns-fault`: which names (domain globs, or all) and what their lookups get
 * (NXDOMAIN, SERVFAIL, or no answer). Pure: the control plane and the agent validate alike, and the
 * agent matches names with {@link matchDomainGlob}.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { ParamReader } from "../params.js";

/** What a faulted lookup gets: an NXDOMAIN or SERVFAIL answer, or no answer at all (`timeout`). */
export type DnsFaultMode = "NXDOMAIN" | "SERVFAIL" | "timeout";
/** The modes, as written in params (matched without regard to case). */
export const DNS_FAULT_MODES: readonly DnsFaultMode[] = ["NXDOMAIN", "SERVFAIL", "timeout"];

/** Parameters of `dns-fault`. */
export interface DnsFaultParams {
  /**
   * Domain globs, lower case, without a trailing dot (`*.payments.internal`, `api.example.com`);
   * every name when absent (`domains` left out, or `["*"]`).
   */
  domains?: string[];
  /** What matching lookups get. @default "NXDOMAIN" */
  mode: DnsFaultMode;
}

/** Bounds of the parameters. */
export const DNS_FAULT_LIMITS = {
  /** At most this many domain globs. */
  domains: 64,
  /** A glob's length, as a name's in text (RFC 1035: 253 characters without the trailing dot). */
  globLength: 253,
  /** At most this many `*` in one glob. */
  wildcards: 8,
} as const;

const LABEL = /^[a-z0-9_*-]{1,63}$/;
const GLOB_HINT = "a domain name such as api.example.com, with * for any run of characters (*.payments.internal, api-*.example.com), or * for every name";

/**
 * Checks one domain glob (already trimmed and lower-cased, trailing dot removed); an error message
 * when it is not one.
 */
function globError(glob: string): string | undefined {
  if (glob.length > DNS_FAULT_LIMITS.globLength) return `is ${glob.length} characters long; a domain name has at most ${DNS_FAULT_LIMITS.globLength}`;
  const labels = glob.split(".");
  if (labels.some((l) => l === "")) return `has an empty label; use ${GLOB_HINT}`;
  if (labels.some((l) => !LABEL.test(l))) return `is not a domain glob; use ${GLOB_HINT} (letters, digits, -, _ and * in labels of at most 63 characters)`;
  const stars = glob.split("*").length - 1;
  if (stars > DNS_FAULT_LIMITS.wildcards) return `has ${stars} wildcards; at most ${DNS_FAULT_LIMITS.wildcards} are allowed`;
  return undefined;
}

function listOf(raw: JsonValue): JsonValue[] {
  if (typeof raw === "string") return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (Array.isArray(raw)) return raw;
  return [raw];
}

/**
 * Reads `domains`: a list of domain globs (JSON array, or a comma-separated string). Returns them
 * lower-cased, without trailing dots, duplicates removed; undefined for every name (absent, or a
 * `*` among them).
 */
function readDomains(reader: ParamReader): string[] | undefined {
  const raw = reader.raw("domains");
  if (raw === undefined) return undefined;
  const items = listOf(raw);
  if (items.length === 0) {
    reader.fail("domains", 'is empty; leave it out (or use ["*"]) to act on every name, or list names such as *.payments.internal');
    return undefined;
  }
  if (items.length > DNS_FAULT_LIMITS.domains) {
    reader.fail("domains", `has ${items.length} entries; at most ${DNS_FAULT_LIMITS.domains} are allowed (use wildcards such as *.example.com)`);
    return undefined;
  }
  const globs: string[] = [];
  const errors: string[] = [];
  for (const item of items) {
    if (typeof item !== "string") {
      errors.push(`${JSON.stringify(item)} is not a domain name`);
      continue;
    }
    const text = item.trim().toLowerCase();
    const glob = text.endsWith(".") && text !== "." ? text.slice(0, -1) : text;
    const error = glob === "" ? `is empty; use ${GLOB_HINT}` : globError(glob);
    if (error) errors.push(`${JSON.stringify(item)} ${error}`);
    else globs.push(glob);
  }
  if (errors.length > 0) {
    reader.fail("domains", errors.join("; "));
    return undefined;
  }
  if (globs.includes("*")) return undefined;
  return [...new Set(globs)];
}

/** Reads `mode`: NXDOMAIN (default), SERVFAIL or timeout, in any case. */
function readMode(reader: ParamReader): DnsFaultMode {
  const raw = reader.raw("mode");
  if (raw === undefined) return "NXDOMAIN";
  const mode = typeof raw === "string" ? DNS_FAULT_MODES.find((m) => m.toLowerCase() === raw.trim().toLowerCase()) : undefined;
  if (!mode) {
    reader.fail("mode", `${JSON.stringify(raw)} is not allowed; use one of: ${DNS_FAULT_MODES.join(", ")}`);
    return "NXDOMAIN";
  }
  return mode;
}

/** Reads dns-fault parameters; problems are collected by the reader. */
export function parseDnsFaultParams(reader: ParamReader): DnsFaultParams {
  const domains = readDomains(reader);
  const mode = readMode(reader);
  reader.rejectUnknown("dns-fault", ["domains", "mode"]);
  return { ...(domains ? { domains } : {}), mode };
}

/**
 * Whether `name` (lower case, no trailing dot) matches `glob` (as parseDnsFaultParams returns it):
 * `*` stands for any run of characters, dots included, so `*.payments.internal` matches
 * `api.payments.internal` and `a.b.payments.internal` but not `payments.internal`. No regular
 * expression: the text between the stars is found left to right, each at its first place after the
 * previous one (which is enough for `*` alone), so the work is bounded by the two lengths.
 */
export function matchDomainGlob(glob: string, name: string): boolean {
  const parts = glob.split("*");
  if (parts.length === 1) return glob === name;
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  if (name.length < first.length + last.length || !name.startsWith(first) || !name.endsWith(last)) return false;
  let at = first.length;
  const end = name.length - last.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i]!;
    if (part === "") continue;
    const found = name.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}
