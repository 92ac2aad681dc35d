/** Maps every error to the API's `{ error: { code, message, issues? } }` shape. */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ErrorJson } from "../api-types.js";
import { ApiError } from "../errors.js";

const JSON_HINT = "send a JSON object with Content-Type: application/json";

/** A body limit for messages: `576 KiB`, `1 MiB`. */
function formatLimit(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / 1024 / 1024} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

function fromFastify(error: FastifyError, request: FastifyRequest): ApiError | undefined {
  switch (error.code) {
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new ApiError(400, "invalid_json", `the request body is not valid JSON (${error.message}); ${JSON_HINT}`);
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new ApiError(400, "invalid_json", `the request body is empty but Content-Type is application/json; ${JSON_HINT}`);
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError(415, "unsupported_media_type", `this endpoint only accepts JSON; ${JSON_HINT}`);
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ApiError(
        413,
        "body_too_large",
        `the request body is larger than ${formatLimit(request.routeOptions.bodyLimit ?? 1024 * 1024)}, this endpoint's limit${request.method === "POST" && (request.routeOptions.url === "/api/v1/plan" || request.routeOptions.url === "/api/v1/runs") ? "; an experiment may be at most 256 KiB" : ""}`,
      );
    default:
      if (error instanceof SyntaxError && error.statusCode === 400) {
        return new ApiError(400, "invalid_json", `the request body is not valid JSON (${error.message}); ${JSON_HINT}`);
      }
      if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
        return new ApiError(error.statusCode, "bad_request", error.message);
      }
      return undefined;
  }
}

/** The JSON body of an ApiError. */
export function errorBody(error: ApiError): ErrorJson {
  return {
    error: {
      code: error.code,
      message: error.message,
      ...(error.issues ? { issues: error.issues } : {}),
      ...error.details,
    },
  };
}

/** Installs the JSON error and not-found handlers. */
export function installErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const api = error instanceof ApiError ? error : fromFastify(error, request);
    if (api) {
      request.auditOutcome ??= api.code;
      if (api.statusCode >= 400) request.auditDetail ??= api.message;
      request.log.debug({ code: api.code, statusCode: api.statusCode, url: request.url }, api.message);
      return reply.code(api.statusCode).send(errorBody(api));
    }
    request.log.error({ err: error, method: request.method, url: request.url }, "request failed");
    return reply.code(500).send(
      errorBody(new ApiError(500, "internal", "the control plane failed to handle the request; see its log for details")),
    );
  });
  app.setNotFoundHandler((request, reply) => {
    const route = `${request.method} ${request.url.split("?")[0] ?? request.url}`;
    return reply
      .code(404)
      .send(errorBody(new ApiError(404, "not_found", `no such endpoint: ${route}; the API lives under /api/v1 (agents, faults)`)));
  });
}
