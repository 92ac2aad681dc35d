/**
 * Reverters of the cloud-revert journal (cloud-journal.ts) for EC2. `ec2-start` undoes an
 * `ec2-stop`: StartInstances, confirmed by DescribeInstances showing the instance `pending` or
 * `running`. Each StartInstances is recorded in the termination ledger before the call, like
 * every other action.
 */
import { DescribeInstancesCommand, StartInstancesCommand } from "@aws-sdk/client-ec2";
import type { Logger } from "pino";
import type { AwsClients } from "./clients.js";
import type { CloudRevertCheck, CloudRevertContext, CloudRevertEntry, CloudReverter } from "./cloud-journal.js";
import { AwsCallError, describeAwsError, errorCode, isDefinitiveRefusal } from "./errors.js";
import type { TerminationLedger } from "./ledger.js";

/** The revert kind that starts instances an `ec2-stop` stopped. */
export const EC2_START_REVERT = "ec2-start";

/** The payload of an {@link EC2_START_REVERT} entry (the region is the entry's). */
export interface Ec2StartPayload {
  instanceIds: string[];
}

/** Instance states that count as started again. */
const STARTED = new Set(["pending", "running"]);
/** Instance states that can never be started again. */
const GONE = new Set(["shutting-down", "terminated"]);

/** The instance ids of an ec2-start payload. Thrown when the payload is not one. */
export function ec2StartIds(entry: CloudRevertEntry): string[] {
  const ids = (entry.payload as Partial<Ec2StartPayload> | null)?.instanceIds;
  if (!Array.isArray(ids) || ids.length === 0 || !ids.every((id) => typeof id === "string")) {
    throw new Error(`cloud revert #${entry.id}: its payload names no instance ids (${JSON.stringify(entry.payload)})`);
  }
  return ids;
}

/** Options of {@link createEc2StartReverter}. */
export interface Ec2StartReverterOptions {
  clients: AwsClients;
  /** Each StartInstances is recorded here before the call. */
  ledger: TerminationLedger;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
}

/** The reverter of `ec2-stop`: StartInstances until DescribeInstances shows them pending or running. */
export function createEc2StartReverter(options: Ec2StartReverterOptions): CloudReverter {
  const { clients, ledger } = options;
  const now = options.now ?? Date.now;
  const log = options.log.child({ component: "aws" });

  return {
    kind: EC2_START_REVERT,
    call: "StartInstances",
    describe(entry) {
      const ids = (entry.payload as Partial<Ec2StartPayload> | null)?.instanceIds ?? [entry.resource];
      return `${ids.join(", ")} stopped (${entry.region})`;
    },

    async confirm({ entry, signal }: CloudRevertContext): Promise<CloudRevertCheck> {
      const ids = ec2StartIds(entry);
      const states = new Map<string, string>();
      try {
        const out = await clients.ec2(entry.region).send(new DescribeInstancesCommand({ InstanceIds: ids }), { abortSignal: signal });
        for (const r of out.Reservations ?? []) for (const i of r.Instances ?? []) if (i.InstanceId) states.set(i.InstanceId, i.State?.Name ?? "unknown");
      } catch (err) {
        if (errorCode(err) === "InvalidInstanceID.NotFound") {
          return { confirmed: false, gone: true, detail: `${ids.join(", ")} no longer exist${ids.length === 1 ? "s" : ""} in ${entry.region} (${describeAwsError(err)}): there is nothing to start` };
        }
        throw new AwsCallError("DescribeInstances", entry.region, errorCode(err), describeAwsError(err), { cause: err });
      }
      const seen = ids.map((id) => `${id} is ${states.get(id) ?? "not found"}`).join(", ");
      const gone = ids.filter((id) => !states.has(id) || GONE.has(states.get(id)!));
      if (gone.length > 0) return { confirmed: false, gone: true, detail: `${seen}: it can't be started again` };
      return { confirmed: ids.every((id) => STARTED.has(states.get(id)!)), detail: seen };
    },

    async revert({ entry, signal }: CloudRevertContext): Promise<void> {
      const ids = ec2StartIds(entry);
      const ledgerIds = ids.map((instanceId) =>
        ledger.recordAction({
          action: "start",
          instanceId,
          region: entry.region,
          call: "StartInstances",
          actor: `${entry.actor} (cloud revert #${entry.id})`,
          ...(entry.runId !== null ? { runId: entry.runId } : {}),
          now: now(),
        }),
      );
      const complete = (outcome: "ok" | "failed" | "unknown", error: string | undefined) => {
        for (const id of ledgerIds) {
          try {
            ledger.complete(id, outcome, error, now());
          } catch (err) {
            log.error({ err, ledgerId: id }, "could not record the outcome of StartInstances in the ledger");
          }
        }
      };
      try {
        await clients.ec2(entry.region).send(new StartInstancesCommand({ InstanceIds: ids }), { abortSignal: signal });
        complete("ok", undefined);
      } catch (err) {
        const error = `StartInstances failed: ${describeAwsError(err)}`;
        complete(isDefinitiveRefusal(err) ? "failed" : "unknown", error);
        // Still stopping: not an error; the confirm that follows says so, and the reconciler asks again.
        if (errorCode(err) === "IncorrectInstanceState") return;
        throw new AwsCallError("StartInstances", entry.region, errorCode(err), describeAwsError(err), { cause: err });
      }
    },
  };
}
