/**
 * The fake AWS (fake-aws.ts) as a process of its own, so that its state outlives the control plane
 * a test kills:
 *
 *   node --import tsx test/support/fake-aws-bin.ts [--port N] [--state FILE] [--transition-ms N]
 *
 * Prints `fake-aws listening on http://127.0.0.1:PORT` once it listens; SIGTERM/SIGINT stop it.
 */
import { parseArgs } from "node:util";
import { startFakeAws } from "./fake-aws.js";
import { fakeAwsVpcPlugin } from "./fake-aws-vpc.js";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: "0" },
    state: { type: "string" },
    "transition-ms": { type: "string", default: "500" },
  },
});

const fake = await startFakeAws({
  port: Number(values.port),
  transitionMs: Number(values["transition-ms"]),
  plugins: [fakeAwsVpcPlugin],
  ...(values.state ? { statePath: values.state } : {}),
});
process.stdout.write(`fake-aws listening on ${fake.url}\n`);
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => void fake.close().then(() => process.exit(0)));
}
