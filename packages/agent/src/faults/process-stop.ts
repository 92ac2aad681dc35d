/**
 * process-stop: freezes the selected processes with SIGSTOP (a hung service: alive, holding its
 * sockets and locks, answering nothing) and resumes them with SIGCONT on revert.
 *
 * The journal holds every pid with its start time *before* the first SIGSTOP, so a revert from the
 * record alone (restart, `recover`, the guard after the agent is SIGKILLed) resumes exactly those
 * processes and never a stranger that inherited a pid.
 */
import { parseFaultParams } from "@firedrill/protocol";
import type { FaultParamsByKind, JsonObject } from "@firedrill/protocol";
import { isProcessAlive } from "../proc.js";
import type { FaultKindDefinition, HostInfo, RunningFault } from "./types.js";
import {
  checkSelection,
  describeSelector,
  previewSelection,
  readProcess,
  selectProcesses,
  signalProcess,
  skippedDetails,
} from "./process-select.js";
import type { ProcessRef, ProtectionHost, Selection } from "./process-select.js";
import { resumeProcesses, revertProcessStopRecord } from "./process-revert.js";

/** Validated process-stop parameters. */
export type ProcessStopPlan = FaultParamsByKind["process-stop"];

const NONE_HINT = "check with ps -eo pid,comm,args";

/**
 * Selects, setting aside processes that are already stopped: someone else stopped them, and this
 * fault's revert must not resume what it did not stop.
 */
function select(plan: ProcessStopPlan, host: ProtectionHost): Selection {
  const selection = selectProcesses(plan, host);
  const selected = selection.selected.filter((p) => p.state !== "T" && p.state !== "t");
  for (const p of selection.selected) {
    if (!selected.includes(p)) selection.skipped.push({ process: p, reason: "already stopped, by someone else" });
  }
  return { selected, skipped: selection.skipped };
}

/** Selects and checks (refused: too many, none, only protected ones). */
function selectChecked(plan: ProcessStopPlan, host: HostInfo): Selection {
  const selection = select(plan, host);
  checkSelection(plan, selection, { allowNone: false, noneHint: NONE_HINT });
  return selection;
}

function validate(params: JsonObject, host: HostInfo): ProcessStopPlan {
  const plan = parseFaultParams("process-stop", params);
  selectChecked(plan, host);
  return plan;
}

function summary(plan: ProcessStopPlan, count: number): string {
  return `stops (SIGSTOP) ${count} process${count === 1 ? "" : "es"} matching ${describeSelector(plan)}; SIGCONT resumes them on revert`;
}

/** The process-stop fault kind. */
export const processStop: FaultKindDefinition<ProcessStopPlan> = {
  kind: "process-stop",
  validate,
  preview(plan, host) {
    const selection = selectChecked(plan, host);
    return previewSelection(selection, summary(plan, selection.selected.length));
  },
  planRevert() {
    // Filled in by start() (updateRevert) before the first SIGSTOP.
    return { pids: [] };
  },
  async start(plan, ctx): Promise<RunningFault> {
    const selection = selectChecked(plan, ctx.host);
    const refs: ProcessRef[] = selection.selected.map((p) => ({ pid: p.pid, startTime: p.startTime }));
    // Write-ahead: the journal knows whom to resume before anyone is stopped.
    ctx.updateRevert({ pids: refs.map((r) => ({ pid: r.pid, startTime: r.startTime })) });
    const stopped = refs.filter((ref) => signalProcess(ref, "SIGSTOP"));
    const details = [summary(plan, stopped.length), ...skippedDetails(selection)];
    ctx.log.info({ pids: stopped.map((r) => r.pid), details }, "stopped processes");
    return {
      details,
      measure() {
        let stillStopped = 0;
        let gone = 0;
        for (const ref of stopped) {
          const p = isProcessAlive(ref.pid, ref.startTime) ? readProcess(ref.pid) : undefined;
          if (!p) gone++;
          else if (p.state === "T") stillStopped++;
        }
        return { processes: stopped.length, stopped: stillStopped, gone };
      },
      async revert() {
        // SIGCONT is harmless to repeat, so every call resumes again.
        resumeProcesses(refs, ctx.log);
      },
    };
  },
  revertRecord: revertProcessStopRecord,
};
