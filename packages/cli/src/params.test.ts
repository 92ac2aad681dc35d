import { describe, expect, it } from "vitest";
import { CliError } from "./errors.js";
import { parseParamValue, parseParams } from "./params.js";

describe("--param parsing", () => {
  it("types values: numbers, booleans, everything else strings", () => {
    expect(parseParams(["load=50", "ratio=0.5", "offset=-3", "on=true", "off=false", "cores=all", "dest=10.0.0.0/8,10.1.0.0/16"])).toEqual({
      load: 50,
      ratio: 0.5,
      offset: -3,
      on: true,
      off: false,
      cores: "all",
      dest: "10.0.0.0/8,10.1.0.0/16",
    });
    expect(parseParamValue("1e3")).toBe("1e3");
    expect(parseParamValue("TRUE")).toBe("TRUE");
    expect(parseParams(["pattern=a=b"])).toEqual({ pattern: "a=b" });
    expect(parseParams([])).toEqual({});
  });

  it.each([
    ["load50", `--param "load50" has no '=': write name=value, e.g. --param load=50`],
    ["=50", `--param "=50" has no name before '=': write name=value, e.g. --param load=50`],
    ["load=", `--param "load=" has no value after '=': write name=value, e.g. --param load=50`],
    ["lo ad=5", `--param "lo ad=5": "lo ad" is not a parameter name; use letters, digits, '_', '-' and '.'`],
  ])("rejects %j precisely", (arg, message) => {
    expect(() => parseParams([arg])).toThrow(new CliError(message));
  });

  it("rejects a parameter given twice", () => {
    expect(() => parseParams(["load=50", "load=60"])).toThrow(/--param load is given twice \("50" and "60"\)/);
  });
});
