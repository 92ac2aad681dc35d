/**
 * The global halt: while set, no run and no ad-hoc fault may start. Kept in the store so it
 * survives restarts.
 */
import type { Store } from "./store/store.js";

/** The global halt, when set. */
export interface HaltState {
  reason: string;
  actor: string;
  /** Epoch ms. */
  at: number;
}

const HALT_SETTING = "halt";

/** The current halt, or undefined. */
export function readHalt(store: Store): HaltState | undefined {
  const raw = store.getSetting(HALT_SETTING);
  return raw ? ((JSON.parse(raw) as HaltState | null) ?? undefined) : undefined;
}

/** Sets (or, with undefined, lifts) the halt. */
export function writeHalt(store: Store, state: HaltState | undefined): void {
  store.setSetting(HALT_SETTING, JSON.stringify(state ?? null));
}

/** A halt as the API returns it. */
export interface HaltJson {
  reason: string;
  actor: string;
  /** ISO time. */
  at: string;
}

/** The halt as JSON. */
export function haltJson(halt: HaltState): HaltJson {
  return { reason: halt.reason, actor: halt.actor, at: new Date(halt.at).toISOString() };
}

/**
 * The plan's verdict while halted: `halted by alice since 2026-…: incident INC-42 — a run would be
 * refused until an admin lifts the halt (firedrill unhalt)`.
 */
export function haltVerdict(halt: HaltState): { rule: "halt"; ok: false; message: string } {
  return {
    rule: "halt",
    ok: false,
    message: `halted by ${halt.actor} since ${new Date(halt.at).toISOString()}: ${halt.reason} — a run would be refused until an admin lifts the halt (firedrill unhalt)`,
  };
}

/** A one-line description of a halt for error messages. */
export function describeHalt(halt: HaltState): string {
  return `firedrill is halted (${halt.reason}, by ${halt.actor} at ${new Date(halt.at).toISOString()})`;
}

/** A lifted halt: the halt, and who lifted it when. */
export interface LiftedHalt extends HaltState {
  liftedBy: string;
  /** Epoch ms. */
  liftedAt: number;
}

const LIFTED_SETTING = "halt_last_lifted";

/** The last halt that was lifted, if any. */
export function readLastLifted(store: Store): LiftedHalt | undefined {
  const raw = store.getSetting(LIFTED_SETTING);
  return raw ? ((JSON.parse(raw) as LiftedHalt | null) ?? undefined) : undefined;
}

/** Lifts the halt, recording who lifted it. Returns the lifted halt, or undefined when none was set. */
export function liftHalt(store: Store, liftedBy: string, now: number): LiftedHalt | undefined {
  const current = readHalt(store);
  if (!current) return undefined;
  const lifted: LiftedHalt = { ...current, liftedBy, liftedAt: now };
  store.db.transaction(() => {
    store.setSetting(LIFTED_SETTING, JSON.stringify(lifted));
    writeHalt(store, undefined);
  })();
  return lifted;
}
