/**
 * Rewrites SQLite-style placeholders (`?`, `@name`, `:name`, `$name`) to PostgreSQL's `$1…$n`,
 * outside string literals, quoted identifiers and comments; `::type` casts are left alone.
 * One linear pass over the statement text (written by us, not by users).
 */

/** A statement rewritten for PostgreSQL, and how to order its parameters. */
export interface PgStatementText {
  text: string;
  /** Positional statement: how many `?`. */
  positional: number;
  /** Named statement: the name of each `$i` (i from 1). */
  names: string[];
}

const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;

/** Translates `sql`; throws when it mixes `?` and named placeholders. */
export function toPgPlaceholders(sql: string): PgStatementText {
  let out = "";
  let positional = 0;
  const names: string[] = [];
  const index = new Map<string, number>();
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      // A literal or a quoted identifier: up to the closing quote ('' and "" escape it).
      let j = i + 1;
      for (;;) {
        if (j >= n) break;
        if (sql[j] === c) {
          if (sql[j + 1] === c) j += 2;
          else break;
        } else j++;
      }
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === "-" && sql[i + 1] === "-") {
      const j = sql.indexOf("\n", i);
      const end = j === -1 ? n : j;
      out += sql.slice(i, end);
      i = end;
    } else if (c === "/" && sql[i + 1] === "*") {
      const j = sql.indexOf("*/", i + 2);
      const end = j === -1 ? n : j + 2;
      out += sql.slice(i, end);
      i = end;
    } else if (c === "?") {
      positional++;
      out += `$${positional}`;
      i++;
    } else if (c === ":" && sql[i + 1] === ":") {
      out += "::";
      i += 2;
    } else if ((c === "@" || c === ":" || c === "$") && NAME_START.test(sql[i + 1] ?? "")) {
      let j = i + 1;
      while (j < n && NAME_CHAR.test(sql[j]!)) j++;
      const name = sql.slice(i + 1, j);
      let k = index.get(name);
      if (k === undefined) {
        names.push(name);
        k = names.length;
        index.set(name, k);
      }
      out += `$${k}`;
      i = j;
    } else {
      out += c;
      i++;
    }
  }
  if (positional > 0 && names.length > 0) throw new Error(`a statement mixes ? and named parameters: ${sql.slice(0, 120)}`);
  return { text: out, positional, names };
}

/** The values of a call in `$i` order: the positional arguments, or the named ones from one object. */
export function orderParameters(statement: PgStatementText, args: readonly unknown[], sqlForErrors: string): unknown[] {
  if (statement.names.length === 0) {
    const flat = args.length === 1 && Array.isArray(args[0]) ? (args[0] as unknown[]) : args;
    if (flat.length !== statement.positional) {
      throw new RangeError(`expected ${statement.positional} parameters, got ${flat.length}: ${sqlForErrors.slice(0, 120)}`);
    }
    return flat.map(toPgValue);
  }
  const bag = args[0];
  if (args.length !== 1 || bag === null || typeof bag !== "object") throw new TypeError(`expected one object of named parameters: ${sqlForErrors.slice(0, 120)}`);
  return statement.names.map((name) => {
    if (!(name in bag)) throw new RangeError(`missing named parameter ${name}: ${sqlForErrors.slice(0, 120)}`);
    return toPgValue((bag as Record<string, unknown>)[name]);
  });
}

function toPgValue(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === "bigint") return value.toString();
  if (typeof value === "boolean") return value ? 1 : 0;
  return value;
}
