/** HTTP routes of the AWS side: `GET /api/v1/spof` (the SPOF finder). */
import type { FastifyInstance } from "fastify";
import { ApiError } from "../errors.js";
import { parseAwsRegion } from "../experiments/spec-values.js";
import type { Store } from "../store/store.js";
import { AwsCallError, AwsRegionError } from "./errors.js";
import { DEFAULT_SPOF_LABEL_KEYS, groupSpofs, labelSpofs, sortSpofs } from "./spof.js";
import type { Spof } from "./spof.js";
import type { AwsGroupState, AwsService } from "./types.js";

/** What the SPOF route needs. */
export interface SpofRoutesOptions {
  /** AWS; absent when the control plane has no AWS access configured (only agents are checked). */
  aws?: AwsService;
  store: Store;
  /** Label keys whose groups are checked. @default ["app","service","role"] */
  labelKeys?: readonly string[];
}

/** The answer of `GET /api/v1/spof`. */
export interface SpofReportJson {
  spofs: Spof[];
  /** The region whose Auto Scaling groups were checked; null without AWS. */
  region: string | null;
  /** How many Auto Scaling groups were checked; null without AWS. */
  groupsChecked: number | null;
  /** How many connected agents were checked. */
  hostsChecked: number;
  labelKeys: string[];
  /** Said when something could not be checked. */
  note?: string;
}

/** Registers `GET /api/v1/spof?region=R`. */
export function registerSpofRoutes(app: FastifyInstance, options: SpofRoutesOptions): void {
  const labelKeys = [...(options.labelKeys ?? DEFAULT_SPOF_LABEL_KEYS)];
  app.get("/api/v1/spof", { config: { permission: "read" } }, async (request): Promise<SpofReportJson> => {
    const query = (request.query ?? {}) as Record<string, unknown>;
    for (const key of Object.keys(query)) {
      if (key !== "region") throw new ApiError(400, "invalid_request", `unknown query parameter ${JSON.stringify(key)}; allowed: region`, [{ field: `query.${key}`, message: "unknown parameter; allowed: region" }]);
    }
    let region: string | undefined;
    if (query["region"] !== undefined && query["region"] !== "") {
      const parsed = typeof query["region"] === "string" ? parseAwsRegion(query["region"]) : { ok: false as const, message: "give one region" };
      if (!parsed.ok) throw new ApiError(400, "invalid_request", `region: ${parsed.message}`, [{ field: "query.region", message: parsed.message }]);
      region = parsed.value;
    }
    const agents = options.store.listAgents();
    const hostsChecked = agents.filter((a) => a.connected).length;
    if (!options.aws) {
      return {
        spofs: sortSpofs(labelSpofs(agents, labelKeys)),
        region: null,
        groupsChecked: null,
        hostsChecked,
        labelKeys,
        note: "the control plane has no AWS access configured: only agent label groups were checked",
      };
    }
    let groups: AwsGroupState[];
    let resolvedRegion: string;
    try {
      groups = await options.aws.listGroups(region);
      resolvedRegion = groups[0]?.region ?? region ?? "";
    } catch (err) {
      if (err instanceof AwsRegionError) throw new ApiError(400, "aws_region_missing", `${err.message}; or pass --region`);
      if (err instanceof AwsCallError) throw new ApiError(502, "aws_error", err.message, undefined, { call: err.call, awsCode: err.code });
      throw err;
    }
    return {
      spofs: sortSpofs([...groupSpofs(groups), ...labelSpofs(agents, labelKeys)]),
      region: resolvedRegion || null,
      groupsChecked: groups.length,
      hostsChecked,
      labelKeys,
    };
  });
}
