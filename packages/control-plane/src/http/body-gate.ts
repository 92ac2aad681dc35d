/**
 * Big request bodies are decoded and parsed one per turn of the event loop. A body of a few
 * hundred KiB costs a few milliseconds to turn into a string and parse as JSON; twenty of them
 * arriving together would otherwise all be parsed in one turn (each `end` event runs its parse at
 * once), holding the loop — agent heartbeats, leases, /healthz — for the sum of them.
 */
import { Readable } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ApiError } from "../errors.js";

/**
 * A fastify `preParsing` hook: the body is read in full (within the route's body limit), then
 * handed on when its turn comes (one per loop turn).
 */
export type BodyGate = (request: FastifyRequest, reply: FastifyReply, payload: NodeJS.ReadableStream) => Promise<NodeJS.ReadableStream>;

/** Creates a gate; the routes that share one take turns. */
export function createBodyGate(): BodyGate {
  const waiting: (() => void)[] = [];
  let releasing = false;
  const releaseNext = (): void => {
    const next = waiting.shift();
    if (!next) {
      releasing = false;
      return;
    }
    next();
    // The next body goes in a later turn: setImmediate callbacks queued during a check phase run in the next loop iteration.
    setImmediate(releaseNext);
  };
  const turn = (): Promise<void> =>
    new Promise((resolve) => {
      waiting.push(resolve);
      if (!releasing) {
        releasing = true;
        setImmediate(releaseNext);
      }
    });

  return async (request, _reply, payload) => {
    const limit = request.routeOptions.bodyLimit ?? 1024 * 1024;
    const tooLarge = () =>
      new ApiError(413, "body_too_large", `the request body is larger than ${Math.round(limit / 1024)} KiB, this endpoint's limit; an experiment may be at most 256 KiB`);
    if (Number(request.headers["content-length"] ?? 0) > limit) throw tooLarge();
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of payload as AsyncIterable<Buffer | string>) {
      const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      length += buffer.length;
      if (length > limit) throw tooLarge();
      chunks.push(buffer);
    }
    await turn();
    const body = Readable.from([Buffer.concat(chunks, length)], { objectMode: false });
    // fastify checks the limit against what it receives; the received length is the same.
    (body as Readable & { receivedEncodedLength?: number }).receivedEncodedLength = length;
    return body;
  };
}
