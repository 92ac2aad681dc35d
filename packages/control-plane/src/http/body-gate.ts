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

/**
 * A body past the limit but not past this is read to its end (and discarded) before the 413 goes
 * out: a server that answers while the client is still sending and then stops reading makes the
 * client's write fail, and many clients (fetch among them) then report a reset connection instead of
 * the precise 413. Past this, the answer goes out at once and the connection is closed.
 */
const DRAIN_LIMIT_BYTES = 8 * 1024 * 1024;

/** Reads `payload` to its end (at most {@link DRAIN_LIMIT_BYTES} in all), keeping nothing. */
async function drain(payload: AsyncIterable<Buffer | string>, already: number): Promise<boolean> {
  let length = already;
  for await (const chunk of payload) {
    length += chunk.length;
    if (length > DRAIN_LIMIT_BYTES) return false;
  }
  return true;
}

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

  return async (request, reply, payload) => {
    const limit = request.routeOptions.bodyLimit ?? 1024 * 1024;
    const tooLarge = () =>
      new ApiError(413, "body_too_large", `the request body is larger than ${Math.round(limit / 1024)} KiB, this endpoint's limit; an experiment may be at most 256 KiB`);
    const refuse = async (received: number): Promise<never> => {
      if (!(await drain(payload as AsyncIterable<Buffer | string>, received))) reply.header("connection", "close");
      throw tooLarge();
    };
    const declared = Number(request.headers["content-length"] ?? 0);
    if (declared > DRAIN_LIMIT_BYTES) {
      reply.header("connection", "close");
      throw tooLarge();
    }
    if (declared > limit) await refuse(0);
    const chunks: Buffer[] = [];
    let length = 0;
    for await (const chunk of payload as AsyncIterable<Buffer | string>) {
      const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      length += buffer.length;
      if (length > limit) await refuse(length);
      chunks.push(buffer);
    }
    await turn();
    const body = Readable.from([Buffer.concat(chunks, length)], { objectMode: false });
    // fastify checks the limit against what it receives; the received length is the same.
    (body as Readable & { receivedEncodedLength?: number }).receivedEncodedLength = length;
    return body;
  };
}
