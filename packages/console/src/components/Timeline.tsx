/** A run's timeline: one item per event, newest last; at most {@link MAX_TIMELINE} rendered. */
import { Component } from "preact";
import type { RunEventJson } from "../api.js";
import { fmtClock, fmtTime, toMs } from "../format.js";

/** The most events a timeline renders; older ones are counted, not shown. */
export const MAX_TIMELINE = 5000;

const BAD = new Set(["breach", "fault-refused", "fault-failed", "revert-failed", "abort", "agent-lost", "unconfirmed", "irreversible"]);

function eventClass(type: string): string {
  if (BAD.has(type)) return "ev bad";
  if (type === "state" || type === "plan") return "ev state";
  if (type === "measurement" || type === "stop-condition") return "ev quiet";
  return "ev";
}

/** One event; events never change, so it renders once. */
class TimelineItem extends Component<{ event: RunEventJson }> {
  override shouldComponentUpdate(next: { event: RunEventJson }): boolean {
    return next.event !== this.props.event;
  }
  override render() {
    const e = this.props.event;
    const ms = toMs(e.time);
    return (
      <li class={eventClass(e.type)} data-event-id={e.id} data-time={ms} data-type={e.type}>
        <time dateTime={e.time} title={fmtTime(ms)}>
          {fmtClock(ms)}
        </time>
        <span class="ev-type">{e.type}</span>
        {e.step && <span class="ev-step">{e.step}</span>}
        <span class="ev-msg">{e.message}</span>
      </li>
    );
  }
}

export interface TimelineProps {
  events: readonly RunEventJson[];
  /** Earlier events not shown. */
  dropped: number;
  /** The list's accessible name. */
  label?: string;
}

export function Timeline({ events, dropped, label }: TimelineProps) {
  return (
    <>
      {dropped > 0 && <p class="muted small">{dropped.toLocaleString("en")} earlier events not shown.</p>}
      <ol data-testid="timeline" class="timeline" aria-label={label ?? "Timeline"}>
        {events.map((e) => (
          <TimelineItem key={e.id} event={e} />
        ))}
      </ol>
    </>
  );
}

/** The last {@link MAX_TIMELINE} events, and how many were left out. */
export function lastEvents(events: readonly RunEventJson[], max: number = MAX_TIMELINE): { events: readonly RunEventJson[]; dropped: number } {
  return events.length <= max ? { events, dropped: 0 } : { events: events.slice(events.length - max), dropped: events.length - max };
}
