/**
 * The header of every page: HALT (the first focusable element), the navigation, who is logged in,
 * log out; and the halt banner, polled every 2 s, with "Lift halt" for admins.
 */
import { useState } from "preact/hooks";
import { del, get, post } from "../api.js";
import type { HaltJson, Session } from "../api.js";
import { fmtTime } from "../format.js";
import { useAction, usePoll } from "../hooks.js";
import { ReasonDialog } from "./ReasonDialog.js";

const PAGES: [href: string, label: string, section: string][] = [
  ["#/fleet", "Fleet", "fleet"],
  ["#/runs", "Runs", "runs"],
  ["#/schedules", "Schedules", "schedules"],
  ["#/spof", "SPOF", "spof"],
  ["#/audit", "Audit", "audit"],
];

export interface HeaderProps {
  session: Session;
  section: string;
  onLogout: () => void;
}

export function Header({ session, section, onLogout }: HeaderProps) {
  const [open, setOpen] = useState(false);
  const halt = usePoll("halt-state", () => get<{ halt: HaltJson | null }>("/api/v1/halt"), 2000, []);
  const [, runHalt] = useAction("halt");
  const [lifting, runLift] = useAction("unhalt");
  const current = halt.data?.halt ?? null;

  return (
    <>
      <header class="top no-print">
        <button type="button" class="halt" data-testid="halt" onClick={() => setOpen(true)} title="Revert every fault on every agent and refuse new ones">
          HALT
        </button>
        <span class="brand">firedrill</span>
        <nav aria-label="Pages">
          {PAGES.map(([href, label, s]) => (
            <a key={href} href={href} aria-current={s === section ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span class="whoami" data-testid="whoami" title={session.caller.scope ? `scope: ${session.caller.scope}` : "no scope limit"}>
          {session.caller.name} ({session.caller.role})
        </span>
        <button type="button" data-testid="logout" onClick={onLogout}>
          Log out
        </button>
      </header>
      {current && (
        <div class="halt-banner" data-testid="halt-banner" role="alert">
          <span>
            HALTED by {current.actor} since {fmtTime(current.at)}: {current.reason}
          </span>
          {session.caller.role === "admin" && (
            <button type="button" data-testid="unhalt" disabled={lifting} onClick={() => void runLift(() => del("/api/v1/halt")).then(halt.reload)}>
              Lift halt
            </button>
          )}
        </div>
      )}
      <ReasonDialog
        open={open}
        testid="halt-dialog"
        confirmTestid="halt-confirm"
        title="Halt everything"
        confirmText="Halt everything"
        onClose={() => setOpen(false)}
        onConfirm={(reason) => runHalt(() => post("/api/v1/halt", { reason })).then(halt.reload)}
      >
        <p>
          Every agent reverts every fault now, every run is aborted, and nothing new starts until an admin lifts the halt. Any role may halt.
        </p>
      </ReasonDialog>
    </>
  );
}
