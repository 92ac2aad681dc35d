/**
 * Target resolution: which agents each target group matches, which of them may be used (connected,
 * opted in, not excluded), and which are picked per the group's mode. Done once, at run start.
 */
import type { AgentRecord } from "../store/types.js";
import { hasLabel } from "./spec-values.js";
import type { AgentSelector, Experiment, TargetMode } from "./types.js";

/** One target group, resolved. */
export interface TargetResolution {
  /** Agents the selector matches. */
  matching: AgentRecord[];
  /** Matching agents that may be targeted: connected, opted in, not excluded. */
  eligible: AgentRecord[];
  /** Eligible agents picked per the group's mode. */
  selected: AgentRecord[];
  /** Matching agents that are not eligible, and why. */
  excluded: { agent: AgentRecord; why: string }[];
}

/** Options of {@link resolveTargets}. */
export interface ResolveTargetsOptions {
  /** Random numbers in [0, 1) for picking hosts. @default Math.random */
  random?: () => number;
  /** Label(s) (`key=value`) every target must carry; undefined for none. */
  optInLabel: string | readonly string[] | undefined;
  /** Agents carrying any of these (`key=value`, or `key` for any value) are never targeted. */
  excludeLabels: readonly string[];
}

/** A fact value of an agent, for selectors. */
function factOf(agent: AgentRecord, fact: string): string | undefined {
  if (fact === "instanceId") return agent.facts.instanceId || agent.instanceId || undefined;
  if (fact === "availabilityZone") return agent.facts.availabilityZone || agent.availabilityZone || undefined;
  if (fact === "hostname") return agent.facts.hostname || agent.hostname || undefined;
  const value = (agent.facts as unknown as Record<string, unknown>)[fact];
  return typeof value === "string" ? value : undefined;
}

/** Whether `value` matches `pattern`: exact, or a glob where `*` matches any characters. */
export function globMatch(pattern: string, value: string): boolean {
  if (!pattern.includes("*")) return pattern === value;
  const source = pattern
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join(".*");
  return new RegExp(`^${source}$`, "s").test(value);
}

/** Whether an agent matches a selector: every criterion given must match. */
export function matchesSelector(agent: AgentRecord, selector: AgentSelector): boolean {
  for (const [key, value] of Object.entries(selector.labels ?? {})) {
    if (!Object.hasOwn(agent.labels, key) || agent.labels[key] !== value) return false;
  }
  for (const [fact, pattern] of Object.entries(selector.facts ?? {})) {
    const value = factOf(agent, fact);
    if (value === undefined || !globMatch(pattern, value)) return false;
  }
  if (selector.agentIds && !selector.agentIds.includes(agent.id)) return false;
  return true;
}

/** How many hosts a mode asks for out of `eligible` (count may ask for more than there are). */
export function wantedCount(mode: TargetMode, eligible: number): number {
  if ("count" in mode) return mode.count;
  if ("percent" in mode) return eligible === 0 ? 0 : Math.max(1, Math.ceil((mode.percent * eligible) / 100 - 1e-9));
  return eligible;
}

/** Picks `n` of `items` at random (partial Fisher-Yates), keeping their original order. */
export function pick<T>(items: readonly T[], n: number, random: () => number): T[] {
  const indexes = items.map((_, i) => i);
  const take = Math.min(n, items.length);
  for (let i = 0; i < take; i++) {
    const j = i + Math.floor(random() * (indexes.length - i));
    [indexes[i], indexes[j]] = [indexes[j]!, indexes[i]!];
  }
  return indexes
    .slice(0, take)
    .sort((a, b) => a - b)
    .map((i) => items[i]!);
}

/**
 * Resolves every target group of an experiment against the known agents.
 * Agents are considered in id order, so a seeded `random` gives the same pick every time.
 */
export function resolveTargets(
  experiment: Experiment,
  agents: readonly AgentRecord[],
  opts: ResolveTargetsOptions,
): Record<string, TargetResolution> {
  const random = opts.random ?? Math.random;
  const optIn = opts.optInLabel === undefined ? [] : typeof opts.optInLabel === "string" ? [opts.optInLabel] : [...opts.optInLabel];
  const sorted = [...agents].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const out: Record<string, TargetResolution> = {};
  for (const [name, target] of Object.entries(experiment.spec.targets)) {
    const matching = sorted.filter((a) => matchesSelector(a, target.selector));
    const eligible: AgentRecord[] = [];
    const excluded: TargetResolution["excluded"] = [];
    for (const agent of matching) {
      const why: string[] = [];
      if (!agent.connected) why.push("not connected");
      for (const label of optIn) if (!hasLabel(agent.labels, label)) why.push(`lacks the opt-in label ${label}`);
      for (const label of opts.excludeLabels) if (hasLabel(agent.labels, label)) why.push(`carries the exclusion label ${label}`);
      if (why.length === 0) eligible.push(agent);
      else excluded.push({ agent, why: why.join("; ") });
    }
    const selected = pick(eligible, wantedCount(target.mode, eligible.length), random);
    out[name] = { matching, eligible, selected, excluded };
  }
  return out;
}

/** A seeded random number generator (mulberry32), for reproducible picks in tests and dry runs. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
