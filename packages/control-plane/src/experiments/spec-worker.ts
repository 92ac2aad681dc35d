/**
 * The worker thread of the spec-check pool (spec-pool.ts): parses experiment text with
 * {@link parseExperiment} and answers with the experiment or its issues. It holds no state.
 */
import { parentPort } from "node:worker_threads";
import { ExperimentSpecError, parseExperiment } from "./spec.js";
import type { SpecCheckReply, SpecCheckRequest } from "./spec-pool.js";

const port = parentPort;
if (port) {
  port.on("message", (request: SpecCheckRequest) => {
    let reply: SpecCheckReply;
    try {
      reply = { id: request.id, ok: true, experiment: parseExperiment(request.text, request.file) };
    } catch (err) {
      reply =
        err instanceof ExperimentSpecError
          ? { id: request.id, ok: false, issues: err.issues }
          : { id: request.id, ok: false, failure: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
    }
    port.postMessage(reply);
  });
  port.postMessage({ ready: true });
}
