/**
 * Fault parameter validation shared by the control plane (refuse before sending) and the agent
 * (refuse before touching the host). Every error names the field, what is wrong and what is allowed.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/** One problem with one field. `field` is a dotted path such as `params.load`. */
export interface FieldIssue {
  field: string;
  message: string;
}

/** Thrown when fault parameters, kind or duration are invalid. Nothing has been started. */
export class InvalidFaultRequestError extends Error {
  override readonly name = "InvalidFaultRequestError";
  constructor(readonly issues: FieldIssue[]) {
    super(issues.map((i) => `${i.field}: ${i.message}`).join("; "));
  }
}

function describe(value: JsonValue | undefined): string {
  if (value === undefined) return "missing";
  if (typeof value === "string") return JSON.stringify(value);
  return JSON.stringify(value);
}

/** Reads typed parameters out of a JSON object, collecting issues instead of throwing early. */
export class ParamReader {
  readonly issues: FieldIssue[] = [];
  private readonly seen = new Set<string>();

  constructor(
    private readonly input: JsonObject,
    private readonly prefix = "params",
  ) {}

  private field(name: string): string {
    return `${this.prefix}.${name}`;
  }

  /** Records a problem with a field. */
  fail(name: string, message: string): void {
    this.issues.push({ field: this.field(name), message });
  }

  /** Whether the parameter was given. */
  has(name: string): boolean {
    return this.input[name] !== undefined && this.input[name] !== null;
  }

  private take(name: string): JsonValue | undefined {
    this.seen.add(name);
    const value = this.input[name];
    return value === null ? undefined : value;
  }

  /** A number (strings holding a number are accepted, as from `--param load=50`). */
  number(
    name: string,
    opts: { min?: number; max?: number; integer?: boolean; unit?: string; default?: number },
  ): number | undefined {
    const raw = this.take(name);
    if (raw === undefined) {
      if (opts.default === undefined) this.fail(name, `is required${range(opts)}`);
      return opts.default;
    }
    const value = typeof raw === "string" && raw.trim() !== "" ? Number(raw) : raw;
    if (typeof value !== "number" || !Number.isFinite(value)) {
      this.fail(name, `${describe(raw)} is not a number${range(opts)}`);
      return undefined;
    }
    if (opts.integer && !Number.isInteger(value)) {
      this.fail(name, `${value} is not a whole number${range(opts)}`);
      return undefined;
    }
    if (opts.min !== undefined && value < opts.min) {
      this.fail(name, `${value} is below the minimum ${opts.min}${opts.unit ?? ""}`);
      return undefined;
    }
    if (opts.max !== undefined && value > opts.max) {
      this.fail(name, `${value} is above the maximum ${opts.max}${opts.unit ?? ""}`);
      return undefined;
    }
    return value;
  }

  /** A string, optionally restricted to a set of values or a pattern. */
  string(
    name: string,
    opts: { required?: boolean; oneOf?: readonly string[]; pattern?: RegExp; patternHint?: string; default?: string } = {},
  ): string | undefined {
    const raw = this.take(name);
    if (raw === undefined) {
      if (opts.required) this.fail(name, "is required");
      return opts.default;
    }
    if (typeof raw !== "string" || raw === "") {
      this.fail(name, `${describe(raw)} is not a non-empty string`);
      return undefined;
    }
    if (opts.oneOf && !opts.oneOf.includes(raw)) {
      this.fail(name, `${describe(raw)} is not allowed; use one of: ${opts.oneOf.join(", ")}`);
      return undefined;
    }
    if (opts.pattern && !opts.pattern.test(raw)) {
      this.fail(name, `${describe(raw)} is not valid; expected ${opts.patternHint ?? opts.pattern.source}`);
      return undefined;
    }
    return raw;
  }

  /** A list of strings (a JSON array, or a comma-separated string as from `--param a=x,y`). */
  stringList(name: string, opts: { required?: boolean } = {}): string[] | undefined {
    const raw = this.take(name);
    if (raw === undefined) {
      if (opts.required) this.fail(name, "is required");
      return undefined;
    }
    const list = typeof raw === "string" ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "") : raw;
    if (!Array.isArray(list) || list.some((v) => typeof v !== "string" || v === "")) {
      this.fail(name, `${describe(raw)} is not a list of strings`);
      return undefined;
    }
    return list as string[];
  }

  /** The raw value, for kinds with their own parsing (e.g. `cores: 2 | "all"`). */
  raw(name: string): JsonValue | undefined {
    return this.take(name);
  }

  /** Records an issue for every parameter that no reader asked for. Call last. */
  rejectUnknown(kind: string, allowed: readonly string[]): void {
    for (const key of Object.keys(this.input)) {
      if (!this.seen.has(key)) {
        this.fail(key, `unknown parameter for ${kind}; allowed: ${allowed.join(", ")}`);
      }
    }
  }
}

function range(opts: { min?: number; max?: number; unit?: string }): string {
  if (opts.min !== undefined && opts.max !== undefined) return ` (allowed: ${opts.min}-${opts.max}${opts.unit ?? ""})`;
  if (opts.min !== undefined) return ` (allowed: >= ${opts.min}${opts.unit ?? ""})`;
  if (opts.max !== undefined) return ` (allowed: <= ${opts.max}${opts.unit ?? ""})`;
  return "";
}

/** The longest duration any fault may have: 12 hours. */
export const MAX_FAULT_DURATION_MS = 12 * 60 * 60 * 1000;
/** The shortest duration a fault may have: 1 second. */
export const MIN_FAULT_DURATION_MS = 1000;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a human duration such as `500ms`, `30s`, `2m`, `1h30m`. A bare number is seconds.
 * Returns undefined when the text is not a duration.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const match of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(match[1]) * (UNIT_MS[match[2]!] ?? 0);
  }
  return Math.round(total);
}

/** Formats milliseconds as a short human duration (`1h2m3s`, `450ms`). */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  let rest = Math.round(ms / 1000);
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const s = rest - m * 60;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s || (!h && !m) ? `${s}s` : ""}`;
}

/**
 * Validates a fault duration given as text (`30s`) or milliseconds. Returns milliseconds or
 * records an issue on `field`.
 */
export function validateDuration(value: unknown, field: string, issues: FieldIssue[]): number | undefined {
  let ms: number | undefined;
  if (typeof value === "number") ms = value;
  else if (typeof value === "string") ms = parseDuration(value);
  if (value === undefined || value === null || value === "") {
    issues.push({ field, message: "is required (e.g. 30s, 5m, 1h)" });
    return undefined;
  }
  if (ms === undefined || !Number.isFinite(ms)) {
    issues.push({ field, message: `${JSON.stringify(value)} is not a duration; use e.g. 500ms, 30s, 5m, 1h30m` });
    return undefined;
  }
  if (ms < MIN_FAULT_DURATION_MS) {
    issues.push({ field, message: `${formatDuration(ms)} is shorter than the minimum 1s` });
    return undefined;
  }
  if (ms > MAX_FAULT_DURATION_MS) {
    issues.push({ field, message: `${formatDuration(ms)} is longer than the maximum 12h` });
    return undefined;
  }
  return ms;
}
