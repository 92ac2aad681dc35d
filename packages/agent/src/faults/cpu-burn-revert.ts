/**
 * The revert half of cpu-burn, from the journal record alone (restart, `recover`, the guard). The
 * burners are threads of the agent that started them: they end with it. See cpu-burn.ts.
 */
import type { JsonObject } from "@firedrill/protocol/core";

/**
 * Nothing to undo once the holder is gone (its threads died with it). Thrown while the holder is
 * alive: only that agent can end its burner threads.
 */
export async function revertCpuBurnRecord(_revert: JsonObject, { holderAlive }: { holderAlive: boolean }): Promise<void> {
  if (holderAlive) {
    throw new Error(
      "the burner threads belong to a live firedrill-agent process; stop that agent (its shutdown reverts the burn)",
    );
  }
  // The holder is gone, and its threads with it.
}
