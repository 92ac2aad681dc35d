/** Parsing of repeatable `--param name=value` flags into a JSON object. */
import type { JsonObject, JsonValue } from "@firedrill/protocol";
import { CliError } from "./errors.js";

const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const NUMBER = /^-?\d+(\.\d+)?$/;

/** `50` → 50, `true`/`false` → booleans, anything else stays a string. */
export function parseParamValue(text: string): JsonValue {
  if (NUMBER.test(text)) return Number(text);
  if (text === "true") return true;
  if (text === "false") return false;
  return text;
}

/**
 * Turns `["load=50", "cores=all"]` into `{ load: 50, cores: "all" }`.
 * Thrown when a flag is not `name=value` or a name repeats: CliError naming the flag.
 */
export function parseParams(args: readonly string[]): JsonObject {
  const params: JsonObject = {};
  const given = new Map<string, string>();
  for (const arg of args) {
    const at = arg.indexOf("=");
    if (at < 0) {
      throw new CliError(`--param ${JSON.stringify(arg)} has no '=': write name=value, e.g. --param load=50`);
    }
    const name = arg.slice(0, at).trim();
    const value = arg.slice(at + 1);
    if (name === "") {
      throw new CliError(`--param ${JSON.stringify(arg)} has no name before '=': write name=value, e.g. --param load=50`);
    }
    if (!NAME.test(name)) {
      throw new CliError(
        `--param ${JSON.stringify(arg)}: ${JSON.stringify(name)} is not a parameter name; use letters, digits, '_', '-' and '.'`,
      );
    }
    if (value === "") {
      throw new CliError(`--param ${JSON.stringify(arg)} has no value after '=': write name=value, e.g. --param ${name}=50`);
    }
    const previous = given.get(name);
    if (previous !== undefined) {
      throw new CliError(
        `--param ${name} is given twice (${JSON.stringify(previous)} and ${JSON.stringify(value)}); give each parameter once (lists are comma-separated: --param ${name}=a,b)`,
      );
    }
    given.set(name, value);
    params[name] = parseParamValue(value);
  }
  return params;
}
