#!/usr/bin/env node
/** The `firedrill` executable. */
import { runCli } from "./program.js";

const code = await runCli(process.argv, {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
});
process.exitCode = code;
