/**
 * A fault kind for tests of the runtime and journal: it creates a real file, and reverting deletes
 * it, so tests can see the effect and its revert on the file system.
 */
import { existsSync, unlinkSync, writeFileSync } from "node:fs";
import { InvalidFaultRequestError, ParamReader } from "@firedrill/protocol";
import type { JsonObject } from "@firedrill/protocol";
import type { FaultKindDefinition } from "../faults/index.js";

interface FileFaultParams {
  path: string;
  failStart: boolean;
}

export const fileFault: FaultKindDefinition<FileFaultParams> = {
  kind: "test-file",
  validate(params: JsonObject) {
    const reader = new ParamReader(params);
    const path = reader.string("path", { required: true, pattern: /^\//, patternHint: "an absolute path" });
    const failStart = reader.string("failStart", { oneOf: ["yes", "no"], default: "no" });
    reader.rejectUnknown("test-file", ["path", "failStart"]);
    if (reader.issues.length > 0) throw new InvalidFaultRequestError(reader.issues);
    return { path: path!, failStart: failStart === "yes" };
  },
  planRevert(params) {
    return { path: params.path };
  },
  async start(params) {
    writeFileSync(params.path, "chaos\n");
    if (params.failStart) throw new Error("start failed half-way on purpose");
    return {
      measure: () => ({ exists: existsSync(params.path) ? 1 : 0 }),
      async revert() {
        if (existsSync(params.path)) unlinkSync(params.path);
      },
    };
  },
  async revertRecord(revert) {
    const path = String(revert.path);
    if (existsSync(path)) unlinkSync(path);
  },
};
