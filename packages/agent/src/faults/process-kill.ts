/**
 * process-kill: sends a signal (SIGTERM by default) to the processes selected by exact name,
 * command-line regex or pid; with `repeatEvery`, keeps killing them (respawns included) for the
 * fault's duration and counts how often they came back.
 *
 * A killed process cannot be revived: reverting ends the repeat loop, and bringing the service back
 * is left to its supervisor (systemd, Kubernetes...), which is what the fault tests.
 */
import { parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import type { FaultContext, FaultKindDefinition, HostInfo, RunningFault } from "./types.js";
import { checkSelection, describeSelector, processKey, selectProcesses, signalProcess } from "./process-select.js";

/** Validated process-kill parameters. */
export type ProcessKillPlan = FaultParamsByKind["process-kill"];

const NONE_HINT = "check with ps -eo pid,comm,args, or set repeatEvery to wait for it to appear";

function validate(params: JsonObject, host: HostInfo): ProcessKillPlan {
  const plan = parseFaultParams("process-kill", params);
  checkSelection(plan, selectProcesses(plan, host.protectedPids()), {
    allowNone: plan.repeatEveryMs !== undefined,
    noneHint: NONE_HINT,
  });
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
    /** One round: select, count newcomers, signal each (if still the same process). */
    round(first: boolean): void {
      const selection = selectProcesses(plan, ctx.host.protectedPids());
      if (first) checkSelection(plan, selection, { allowNone: plan.repeatEveryMs !== undefined, noneHint: NONE_HINT });
      else if (selection.selected.length > plan.maxProcesses) {
        ctx.log.warn(
          { matched: selection.selected.length, maxProcesses: plan.maxProcesses },
          "more processes match than maxProcesses; this round signals none",
        );
        return;
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
    },
  };
}

/** The process-kill fault kind. */
export const processKill: FaultKindDefinition<ProcessKillPlan> = {
  kind: "process-kill",
  validate,
  planRevert(plan) {
    // A killed process cannot be revived: nothing to undo. The record says what was done, and
    // whether a repeat loop (which lives in the agent process) was running.
    return { selector: describeSelector(plan), signal: plan.signal, repeat: plan.repeatEveryMs !== undefined };
  },
  async start(plan, ctx): Promise<RunningFault> {
    const killer = createKiller(plan, ctx);
    killer.round(true);
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
  async revertRecord(revert, { holderAlive }) {
    if (holderAlive && revert.repeat === true) {
      throw new Error(
        "the repeat-kill loop belongs to a live firedrill-agent process; stop the fault there, or stop that agent (its shutdown ends the loop)",
      );
    }
    // Killed processes cannot be revived, and the loop died with its agent: nothing to undo.
  },
};
