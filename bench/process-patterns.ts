/**
 * Catastrophic process-fault patterns: RE2 (re2js, what the agent runs) against JavaScript's
 * backtracking RegExp (what it ran before), per command line, and a whole selection on this host
 * with 50 processes whose 4 KiB command lines are crafted for those patterns.
 * Goal: every match in well under 1 ms at 4 KiB; a whole selection far below the 500 ms budget.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { performance } from "node:perf_hooks";
import { compileProcessPattern } from "@firedrill/protocol";
import { selectProcesses } from "../packages/agent/src/faults/process-select.js";
import { printTable } from "./table.js";

const PATTERNS: { pattern: string; input: (n: number) => string }[] = [
  { pattern: "^(a+)+$", input: (n) => `${"a".repeat(n - 1)}!` },
  { pattern: "^([^X]+)+X", input: (n) => "y".repeat(n) },
  { pattern: "(a|aa)+$", input: (n) => `${"a".repeat(n - 1)}!` },
  { pattern: "(.*a){20}", input: (n) => `${"a".repeat(Math.min(19, n - 1))}${"b".repeat(n - Math.min(19, n - 1))}` },
];

function timeMs(fn: () => void, runs: number): number {
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) fn();
  return (performance.now() - t0) / runs;
}

export async function benchProcessPatterns(): Promise<void> {
  const rows: (string | number)[][] = [];
  for (const { pattern, input } of PATTERNS) {
    const re2 = compileProcessPattern(pattern);
    const native = new RegExp(pattern);
    // The native engine only on short inputs: it doubles (or worse) with each character.
    const nativeMs = [16, 20, 24].map((n) => timeMs(() => native.test(input(n)), 1));
    const re2Ms = [24, 1024, 4096].map((n) => timeMs(() => re2.test(input(n)), 50));
    rows.push([pattern, ...nativeMs.map((ms) => ms.toFixed(2)), ...re2Ms.map((ms) => ms.toFixed(3))]);
  }
  printTable(
    "process patterns: one match, ms (RegExp = JavaScript's backtracking engine; RE2 = what the agent runs)",
    ["PATTERN", "RegExp@16", "RegExp@20", "RegExp@24", "RE2@24", "RE2@1KiB", "RE2@4KiB"],
    rows,
  );

  const children: ChildProcess[] = [];
  try {
    for (const { input } of PATTERNS) {
      for (let i = 0; i < 12; i++) {
        children.push(spawn("bash", ["-c", 'exec -a "$0" sleep 120', input(4090)], { stdio: "ignore" }));
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    const host = { protectedPids: () => [1, process.pid, process.ppid] };
    const selectionRows = PATTERNS.map(({ pattern }) => {
      const runs = [1, 2, 3, 4, 5].map(() => timeMs(() => selectProcesses({ pattern, maxProcesses: 1000 }, host), 1));
      return [pattern, Math.min(...runs).toFixed(1), Math.max(...runs).toFixed(1), "500"];
    });
    printTable(
      `process patterns: a whole selection on this host (${children.length} crafted 4 KiB command lines among its processes), ms`,
      ["PATTERN", "FASTEST", "SLOWEST", "BUDGET"],
      selectionRows,
    );
  } finally {
    for (const c of children) c.kill("SIGKILL");
  }
}
