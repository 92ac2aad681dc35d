/**
 * process-kill: sends a signal (SIGTERM by default) to the processes selected by exact name,
 * command-line regex or pid; with `repeatEvery`, keeps killing them (respawns included) for the
 * fault's duration and counts how often they came back.
 *
 * A killed process cannot be revived: reverting ends the repeat loop, and bringing the service back
 * is left to its supervisor (systemd, Kubernetes...), which is what the fault tests.
 */
import { formatDuration, parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import type { FaultContext, FaultKindDefinition, HostInfo, RunningFault } from "./types.js";
import {
  checkSelection,
  describeSelector,
  previewSelection,
  processKey,
  selectProcesses,
  signalProcess,
  skippedDetails,
} from "./process-select.js";
import type { Selection } from "./process-select.js";
import { revertProcessKillRecord } from "./process-revert.js";

/** Validated process-kill parameters. */
export type ProcessKillPlan = FaultParamsByKind["process-kill"];

const NONE_HINT = "check with ps -eo pid,comm,args, or set repeatEvery to wait for it to appear";

/** Selects and checks (refused: too many, none without repeatEvery, only protected ones). */
function selectChecked(plan: ProcessKillPlan, host: HostInfo): Selection {
  const selection = selectProcesses(plan, host);
  checkSelection(plan, selection, { allowNone: plan.repeatEveryMs !== undefined, noneHint: NONE_HINT });
  return selection;
}

function validate(params: JsonObject, host: HostInfo): ProcessKillPlan {
  const plan = parseFaultParams("process-kill", params);
  selectChecked(plan, host);
  return plan;
}

/** Runs kill rounds and keeps the counts. */
function createKiller(plan: ProcessKillPlan, ctx: FaultContext) {
  const signal = plan.signal as NodeJS.Signals;
  const seen = new Set<string>();
  const counts = { killed: 0, processes: 0, cameBack: 0, lastPids: 0, rounds: 0 };
  let killRounds = 0;
  return {
    counts,
    /** One round: select, count newcomers, signal each (if still the same process). Returns the selection. */
    round(first: boolean): Selection | undefined {
      let selection: Selection;
      if (first) selection = selectChecked(plan, ctx.host);
      else {
        try {
          selection = selectProcesses(plan, ctx.host);
        } catch (err) {
          ctx.log.warn({ err }, "this kill round could not select; it signals none");
          return undefined;
        }
      }
      if (!first && selection.selected.length > plan.maxProcesses) {
        ctx.log.warn(
          { matched: selection.selected.length, maxProcesses: plan.maxProcesses },
          "more processes match than maxProcesses; this round signals none",
        );
        return selection;
      }
      counts.rounds++;
      const pids: number[] = [];
      for (const p of selection.selected) {
        const key = processKey(p);
        if (!seen.has(key)) {
          seen.add(key);
          counts.processes++;
          if (killRounds > 0) counts.cameBack++;
        }
        if (signalProcess(p, signal)) pids.push(p.pid);
      }
      counts.killed += pids.length;
      counts.lastPids = pids.length;
      if (pids.length > 0) {
        killRounds++;
        ctx.log.info({ pids, signal }, "signalled processes");
      }
      return selection;
    },
  };
}

function summary(plan: ProcessKillPlan, count: number): string {
  const what = `${count} process${count === 1 ? "" : "es"} matching ${describeSelector(plan)}`;
  return plan.repeatEveryMs !== undefined
    ? `sends ${plan.signal} to ${what} now, then every ${formatDuration(plan.repeatEveryMs)} to whatever matches (respawns included) for the fault's duration`
    : `sends ${plan.signal} to ${what}`;
}

/** The process-kill fault kind. */
export const processKill: FaultKindDefinition<ProcessKillPlan> = {
  kind: "process-kill",
  validate,
  preview(plan, host) {
    const selection = selectChecked(plan, host);
    return previewSelection(selection, summary(plan, selection.selected.length));
  },
  planRevert(plan) {
    // A killed process cannot be revived: nothing to undo. The record says what was done, and
    // whether a repeat loop (which lives in the agent process) was running.
    return { selector: describeSelector(plan), signal: plan.signal, repeat: plan.repeatEveryMs !== undefined };
  },
  async start(plan, ctx): Promise<RunningFault> {
    const killer = createKiller(plan, ctx);
    const first = killer.round(true);
    const details = first ? [summary(plan, first.selected.length), ...skippedDetails(first)] : [];
    ctx.log.info({ details }, "process-kill running");
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    if (plan.repeatEveryMs !== undefined) {
      const every = plan.repeatEveryMs;
      const tick = () => {
        if (stopped) return;
        try {
          killer.round(false);
        } catch (err) {
          ctx.log.error({ err }, "kill round failed");
        }
        timer = setTimeout(tick, every);
      };
      timer = setTimeout(tick, every);
    }
    return {
      details,
      measure() {
        const c = killer.counts;
        return { killed: c.killed, processes: c.processes, came_back: c.cameBack, last_pids: c.lastPids, rounds: c.rounds };
      },
      async revert() {
        stopped = true;
        clearTimeout(timer);
      },
    };
  },
  revertRecord: revertProcessKillRecord,
};
