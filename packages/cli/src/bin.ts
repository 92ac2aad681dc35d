#!/usr/bin/env node
/** The `firedrill` executable. */
import { runCli } from "./program.js";

// `firedrill … | head`: when the reader of the output goes away, stop quietly with status 0, as
// Unix tools do on SIGPIPE (Node ignores SIGPIPE and reports EPIPE on the stream instead). A
// command that shuts down gracefully on SIGTERM (the server) gets that shutdown rather than an exit.
let outputClosed = false;
const onOutputError = (err: NodeJS.ErrnoException): void => {
  if (err.code !== "EPIPE") throw err;
  if (outputClosed) return;
  outputClosed = true;
  if (process.listenerCount("SIGTERM") > 0) process.kill(process.pid, "SIGTERM");
  else process.exit(0);
};
process.stdout.on("error", onOutputError);
process.stderr.on("error", onOutputError);

const code = await runCli(process.argv, {
  out: (text) => {
    if (!outputClosed) process.stdout.write(text);
  },
  err: (text) => {
    if (!outputClosed) process.stderr.write(text);
  },
  outIsTerminal: process.stdout.isTTY === true,
});
process.exitCode = code;
