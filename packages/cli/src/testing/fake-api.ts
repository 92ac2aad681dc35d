/**
 * Test helpers for the CLI: a stand-in control plane over `node:http` (or `node:https`), the
 * environment a CLI test runs in, and an in-process `firedrill` runner. Not part of the build.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import type { IncomingMessage, RequestListener, Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, vi } from "vitest";
import { runCli } from "../program.js";

/** An API token in the right format, for the fake control plane to accept. */
export const TEST_TOKEN = "fdt_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/** A request the fake control plane got. */
export interface AskedRequest {
  method: string;
  /** With the query string. */
  url: string;
  authorization: string | undefined;
  /** The parsed JSON body; undefined when there was none. */
  body: unknown;
}

export interface FakeApiOptions {
  /** The one API token it accepts, as `Authorization: Bearer <token>`. */
  token: string;
  /**
   * The 401 message for a request without the token (`authorization` undefined) or with another one.
   * Default: "this endpoint needs an API token: …" without one; with another, a message that
   * echoes what it got, to prove the CLI never shows a token even when a server does.
   */
  refusal?: (authorization: string | undefined) => string;
  /** Serve https with this key and certificate (PEM). Default: http. */
  tls?: { key: string; cert: string };
}

/** A running stand-in control plane. */
export interface FakeApi {
  /** `http://127.0.0.1:PORT` (or https). */
  readonly url: string;
  /** Every request, in order; {@link reset} empties it. */
  readonly asked: AskedRequest[];
  /**
   * Answers `method path` (any query) with `status` and the JSON `body`, from now on; a `path`
   * with a query string (`/api/v1/agents?limit=1000&cursor=c2`) answers that exact URL only, and
   * before the path alone. Unanswered routes get 404.
   */
  answer(method: string, path: string, status: number, body: unknown): void;
  /** Like {@link answer}, with a body that is not JSON (e.g. an HTML file) and its content type. */
  answerText(method: string, path: string, status: number, text: string, contentType: string): void;
  /** Forgets the requests and the answers. */
  reset(): void;
  close(): Promise<void>;
}

function defaultRefusal(authorization: string | undefined): string {
  return authorization === undefined
    ? "this endpoint needs an API token: send Authorization: Bearer <token>"
    : `the API token is not valid for this control plane (got ${authorization})`;
}

async function bodyOf(req: IncomingMessage): Promise<unknown> {
  let text = "";
  for await (const chunk of req) text += (chunk as Buffer).toString();
  return text === "" ? undefined : JSON.parse(text);
}

/** Starts a stand-in control plane on 127.0.0.1: checks the bearer token, records requests, answers canned JSON per `METHOD path`. */
export async function startFakeApi(options: FakeApiOptions): Promise<FakeApi> {
  const refusal = options.refusal ?? defaultRefusal;
  const asked: AskedRequest[] = [];
  const answers = new Map<string, { status: number; body: unknown; contentType?: string }>();
  const listener: RequestListener = (req, res) => {
    void bodyOf(req).then((body) => {
      asked.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, body });
      const reply = (status: number, json: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(json));
      };
      if (req.headers.authorization !== `Bearer ${options.token}`) {
        return reply(401, { error: { code: "unauthenticated", message: refusal(req.headers.authorization) } });
      }
      const answer = answers.get(`${req.method} ${req.url ?? ""}`) ?? answers.get(`${req.method} ${(req.url ?? "").split("?")[0]}`);
      if (!answer) return reply(404, { error: { code: "not_found", message: `no route ${req.method} ${req.url}` } });
      if (answer.contentType !== undefined) {
        res.writeHead(answer.status, { "content-type": answer.contentType });
        return res.end(answer.body as string);
      }
      reply(answer.status, answer.body);
    });
  };
  const server: Server = options.tls ? createHttpsServer(options.tls, listener) : createHttpServer(listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `${options.tls ? "https" : "http"}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    asked,
    answer(method, path, status, body) {
      answers.set(`${method} ${path}`, { status, body });
    },
    answerText(method, path, status, text, contentType) {
      answers.set(`${method} ${path}`, { status, body: text, contentType });
    },
    reset() {
      asked.length = 0;
      answers.clear();
    },
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The environment {@link stubCliEnv} set up. */
export interface CliEnv {
  /** A fresh temporary folder; FIREDRILL_CONFIG is `config.json` in it. */
  dir: string;
  /** Unstubs every environment variable and removes {@link dir}. */
  restore(): void;
}

/**
 * Points the CLI at a fresh config file in a temporary folder and stubs FIREDRILL_SERVER and
 * FIREDRILL_TOKEN (`vi.stubEnv`; "" unsets them for the CLI).
 */
export function stubCliEnv(options: { server: string; token: string; prefix?: string }): CliEnv {
  const dir = mkdtempSync(join(tmpdir(), options.prefix ?? "firedrill-cli-"));
  vi.stubEnv("FIREDRILL_CONFIG", join(dir, "config.json"));
  vi.stubEnv("FIREDRILL_SERVER", options.server);
  vi.stubEnv("FIREDRILL_TOKEN", options.token);
  return {
    dir,
    restore() {
      vi.unstubAllEnvs();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What one `firedrill …` run did. */
export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Runs `firedrill ...args` in this process, collecting stdout and stderr. */
export async function runCliInProcess(...args: string[]): Promise<CliRun> {
  let out = "";
  let err = "";
  const code = await runCli(["node", "firedrill", ...args], { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

/** What {@link useFakeApi} gives a test file; read its fields inside tests and hooks. */
export interface FakeApiSuite {
  /** The stand-in control plane, emptied before each test. */
  readonly api: FakeApi;
  /** Its {@link FakeApi.url}. */
  readonly url: string;
  /** Its {@link FakeApi.asked}: the current test's requests. */
  readonly asked: AskedRequest[];
  /** The current test's {@link CliEnv.dir}. */
  readonly dir: string;
}

/**
 * Registers the vitest hooks of a CLI command test file: a {@link startFakeApi} for the file,
 * reset before each test, and a {@link stubCliEnv} per test, with FIREDRILL_SERVER set to the
 * fake API unless `server` says otherwise.
 */
export function useFakeApi(options: FakeApiOptions & { prefix?: string; server?: (api: FakeApi) => string }): FakeApiSuite {
  let api: FakeApi | undefined;
  let env: CliEnv | undefined;
  beforeAll(async () => {
    api = await startFakeApi(options);
  });
  afterAll(async () => {
    await api?.close();
  });
  beforeEach(() => {
    suite.api.reset();
    env = stubCliEnv({ server: options.server ? options.server(suite.api) : suite.api.url, token: options.token, ...(options.prefix ? { prefix: options.prefix } : {}) });
  });
  afterEach(() => {
    env?.restore();
  });
  const suite: FakeApiSuite = {
    get api() {
      if (!api) throw new Error("the fake API starts in beforeAll: use it inside tests and hooks");
      return api;
    },
    get url() {
      return suite.api.url;
    },
    get asked() {
      return suite.api.asked;
    },
    get dir() {
      if (!env) throw new Error("the CLI environment is set up in beforeEach: use it inside tests and hooks");
      return env.dir;
    },
  };
  return suite;
}
