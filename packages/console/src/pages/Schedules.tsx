/** Schedules: each with its next slot, its recent history (ran, missed, refused, would-kill) and pause / resume. */
import { get, post, seg } from "../api.js";
import type { ScheduleJson, SlotJson } from "../api.js";
import { ListTable } from "../components/ListTable.js";
import { fmtTime } from "../format.js";
import { useAction, usePoll } from "../hooks.js";

/** Schedules whose history is loaded (one request each). */
const MAX_HISTORIES = 100;
/** Slots shown per schedule. */
const HISTORY_SLOTS = 8;

interface ScheduleView {
  schedules: ScheduleJson[];
  slots: Map<string, SlotJson[]>;
}

async function loadSchedules(): Promise<ScheduleView> {
  const { schedules } = await get<{ schedules: ScheduleJson[] }>("/api/v1/schedules");
  const slots = new Map<string, SlotJson[]>();
  await Promise.all(
    schedules.slice(0, MAX_HISTORIES).map(async (s) => {
      const detail = await get<{ slots: SlotJson[] }>(`/api/v1/schedules/${seg(s.id)}?slots=${HISTORY_SLOTS}`);
      slots.set(s.id, detail.slots);
    }),
  );
  return { schedules, slots };
}

function when(s: ScheduleJson): string {
  if (s.kind === "experiment") return `cron ${s.cron ?? "?"} (${s.tz})`;
  return `Chaos-Monkey ${s.group ?? "?"}${s.region ? ` in ${s.region}` : ""}, ${s.window ?? "?"} (${s.tz})${s.killChance !== null ? `, ${Math.round(s.killChance * 100)} % per workday` : ""}${s.leashed ? ", leashed (would-kill only)" : ""}`;
}

function Slot({ slot }: { slot: SlotJson }) {
  return (
    <li class={`slot outcome-${slot.outcome}`} data-outcome={slot.outcome}>
      {fmtTime(slot.plannedAt)} <strong>{slot.outcome}</strong>
      {slot.runId && (
        <>
          {" "}
          <a href={`#/runs/${seg(slot.runId)}`}>{slot.runId}</a>
        </>
      )}
      {slot.instanceId && ` ${slot.instanceId}`}
      {slot.detail && <span class="small"> — {slot.detail}</span>}
    </li>
  );
}

export function SchedulesPage() {
  const view = usePoll("schedules", loadSchedules, 10_000, []);
  const [busy, run] = useAction("schedule-action");
  const schedules = view.data?.schedules ?? [];
  const act = (id: string, what: "pause" | "resume") => void run(() => post(`/api/v1/schedules/${seg(id)}/${what}`)).then(view.reload);
  return (
    <main>
      <h1>Schedules</h1>
      <ListTable testid="schedules" columns={["Schedule", "When", "State", "Next slot", "History", <span class="sr-only">Actions</span>]}>
        {schedules.map((s) => (
          <tr key={s.id} data-schedule-id={s.id} data-state={s.state}>
            <td>
              {s.name}
              <div class="muted small">
                {s.id} · by {s.createdBy}
              </div>
            </td>
            <td class="small">{when(s)}</td>
            <td>
              <span class={`state state-${s.state}`}>{s.state}</span>
              <div class="small muted">since {fmtTime(s.activeSince)}</div>
            </td>
            <td class="small" data-testid="next-slot">
              {s.state === "paused" ? "paused" : s.nextSlot ? `${fmtTime(s.nextSlot.at)}${s.nextSlot.note ? ` — ${s.nextSlot.note}` : ""}` : "none"}
            </td>
            <td class="small">
              <ul class="slots" data-testid="history">
                {(view.data?.slots.get(s.id) ?? (s.lastSlot ? [s.lastSlot] : [])).map((slot) => (
                  <Slot key={slot.slot} slot={slot} />
                ))}
              </ul>
              {!(view.data?.slots.get(s.id)?.length ?? s.lastSlot) && <span class="muted">no slot yet</span>}
            </td>
            <td>
              {s.state === "active" ? (
                <button type="button" data-testid="pause" disabled={busy} onClick={() => act(s.id, "pause")}>
                  Pause
                </button>
              ) : (
                <button type="button" data-testid="resume" disabled={busy} onClick={() => act(s.id, "resume")}>
                  Resume
                </button>
              )}
            </td>
          </tr>
        ))}
      </ListTable>
      {view.loaded && schedules.length === 0 && <p class="muted">No schedule. Create one with firedrill schedule create (docs/schedules.md).</p>}
    </main>
  );
}
