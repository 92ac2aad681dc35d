/** A command failed in a way the user can act on: the message says what, where and how; `exitCode` is what the process exits with. */
export class CommandError extends Error {
  override readonly name = "CommandError";
  constructor(
    message: string,
    /** 1: error (unreachable, not the pinned control plane, …), 2: bad configuration or a refused join token. */
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}
