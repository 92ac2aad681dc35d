/**
 * Fleet: every agent with its labels, capabilities, connection state and active faults, filtered
 * by label; and a host's page with its faults' measurements over time.
 */
import { useMemo, useState } from "preact/hooks";
import type uPlot from "uplot";
import { get, seg } from "../api.js";
import type { AgentJson, AgentListJson, AgentMeasurementsJson, AgentSummaryJson } from "../api.js";
import { Chart, thin } from "../components/Chart.js";
import { ListTable } from "../components/ListTable.js";
import { fmtDuration, fmtNumber, fmtTime, plural } from "../format.js";
import { usePoll } from "../hooks.js";

/** The most agents the fleet page loads (5 pages of 1,000). */
export const MAX_FLEET_AGENTS = 5000;

/** The connection state in one word. */
export function agentState(a: Pick<AgentSummaryJson, "connected" | "stale" | "revokedAt">): string {
  if (a.revokedAt) return "revoked";
  if (a.connected) return "connected";
  return a.stale ? "stale" : "disconnected";
}

interface FleetView {
  agents: AgentSummaryJson[];
  total: number;
  connected: number;
  /** More agents match than were loaded. */
  more: boolean;
}

/** `app=web, env=prod` -> ["app=web", "env=prod"]. */
export function selectorLabels(selector: string): string[] {
  return selector
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

async function loadFleet(selector: string): Promise<FleetView> {
  const labels = selectorLabels(selector);
  const agents: AgentSummaryJson[] = [];
  let cursor: string | null = null;
  let total = 0;
  let connected = 0;
  do {
    const q = new URLSearchParams({ limit: "1000" });
    for (const l of labels) q.append("label", l);
    if (cursor !== null) q.set("cursor", cursor);
    const page: AgentListJson = await get<AgentListJson>(`/api/v1/agents?${q.toString()}`);
    agents.push(...page.agents);
    cursor = page.nextCursor;
    total = page.total;
    connected = page.connected;
  } while (cursor !== null && agents.length < MAX_FLEET_AGENTS);
  return { agents, total, connected, more: cursor !== null };
}

function Labels({ labels }: { labels: Record<string, string> }) {
  const entries = Object.entries(labels);
  if (entries.length === 0) return <span class="muted">none</span>;
  return (
    <span class="labels">
      {entries.map(([k, v]) => (
        <code key={k} class="label">
          {k}={v}
        </code>
      ))}
    </span>
  );
}

export function FleetPage() {
  const [draft, setDraft] = useState("");
  const [selector, setSelector] = useState("");
  const fleet = usePoll("fleet", () => loadFleet(selector), 5000, [selector]);
  const view = fleet.data;

  return (
    <main>
      <h1>Fleet</h1>
      <form
        class="filter"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setSelector(draft.trim());
        }}
      >
        <label for="fleet-selector">Label selector</label>
        <input
          id="fleet-selector"
          name="selector"
          placeholder="app=web, env=staging"
          value={draft}
          onInput={(e) => setDraft((e.currentTarget as HTMLInputElement).value)}
          onChange={(e) => setSelector((e.currentTarget as HTMLInputElement).value.trim())}
        />
        <button type="submit">Filter</button>
        <span class="hint">every key=value must match (exact)</span>
      </form>
      {view && (
        <p class="summary">
          {plural(view.agents.length, "agent")} {selector ? `matching ${selector}` : "shown"}; the fleet has {plural(view.total, "agent")}, {view.connected.toLocaleString("en")} connected.
          {view.more && ` Only the first ${MAX_FLEET_AGENTS.toLocaleString("en")} are shown: narrow the selector to see the others.`}
        </p>
      )}
      {!fleet.loaded && <p aria-busy="true">Loading…</p>}
      <ListTable testid="agents" columns={["Host", "State", "Labels", "Capabilities", "Active faults", "Last seen"]}>
        {view?.agents.map((a) => {
          const state = agentState(a);
          return (
            <tr key={a.id} data-agent-id={a.id}>
              <td>
                <a href={`#/fleet/${seg(a.id)}`}>{a.hostname}</a>
                <div class="muted small">{a.id}</div>
              </td>
              <td>
                <span class={`state state-${state}`} data-testid="agent-state">
                  {state}
                </span>
              </td>
              <td>
                <Labels labels={a.labels} />
              </td>
              <td class="small">
                {a.capabilities.faultKinds.join(", ") || <span class="muted">no fault kinds</span>}
                {!a.capabilities.root && <div class="muted">not root</div>}
              </td>
              <td class="num">{a.activeFaults}</td>
              <td class="small nowrap">{fmtTime(a.lastSeenAt)}</td>
            </tr>
          );
        })}
      </ListTable>
      {view && view.agents.length === 0 && <p class="muted">No agent {selector ? `matches ${selector}` : "has connected yet: install one (docs/install.md)"}.</p>}
    </main>
  );
}

const PALETTE = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];

type MeasuredFault = AgentMeasurementsJson["faults"][number];

function MeasurementChart({ fault }: { fault: MeasuredFault }) {
  const keys = useMemo(() => [...new Set(fault.samples.flatMap((s) => Object.keys(s.m)))].sort(), [fault.samples]);
  const data = useMemo((): uPlot.AlignedData => {
    const points = thin(fault.samples);
    return [points.map((p) => p.at / 1000), ...keys.map((k) => points.map((p) => p.m[k] ?? null))];
  }, [fault.samples, keys]);
  if (keys.length === 0) {
    return (
      <div class="chart empty" data-testid="measurement-chart" data-samples={0}>
        No measurements reported.
      </div>
    );
  }
  return (
    <Chart
      testid="measurement-chart"
      label={`${fault.kind} measurements: ${keys.join(", ")}`}
      series={keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length]! }))}
      data={data}
      height={180}
      attrs={{ "data-samples": data[0].length, "data-fault-id": fault.faultId }}
    />
  );
}

export function HostPage({ agentId }: { agentId: string }) {
  const agent = usePoll("host", () => get<{ agent: AgentJson }>(`/api/v1/agents/${seg(agentId)}`), 5000, [agentId]);
  const measured = usePoll("host-measurements", () => get<AgentMeasurementsJson>(`/api/v1/agents/${seg(agentId)}/measurements`), 5000, [agentId]);
  const a = agent.data?.agent;
  const faults = measured.data?.faults ?? [];

  return (
    <main>
      <p class="crumbs">
        <a href="#/fleet">Fleet</a> / {a?.hostname ?? agentId}
      </p>
      <h1>{a?.hostname ?? agentId}</h1>
      {a && (
        <dl class="facts">
          <dt>State</dt>
          <dd>
            <span class={`state state-${agentState(a)}`} data-testid="agent-state">
              {agentState(a)}
            </span>{" "}
            since {fmtTime(a.connected ? a.connectedAt : a.lastSeenAt)}
          </dd>
          <dt>Agent</dt>
          <dd>
            <code>{a.id}</code> version {a.version}
            {a.instanceId && ` · ${a.instanceId} (${a.availabilityZone ?? "?"})`}
          </dd>
          <dt>Labels</dt>
          <dd>
            <Labels labels={a.labels} />
          </dd>
          <dt>Fault kinds</dt>
          <dd>{a.capabilities.faultKinds.join(", ") || "none"}</dd>
          {a.facts && (
            <>
              <dt>Host</dt>
              <dd>
                {a.facts.osDistro || a.facts.osPlatform} {a.facts.osRelease}, kernel {a.facts.kernel}, {a.facts.arch}, {plural(a.facts.cpuCount, "CPU")},{" "}
                {fmtNumber(Math.round(a.facts.memoryBytes / 2 ** 20))} MiB
              </dd>
            </>
          )}
          <dt>Active faults</dt>
          <dd>{a.activeFaults}</dd>
        </dl>
      )}
      <h2>Faults and their measurements</h2>
      <p class="hint">The newest 50 faults of this host; the control plane keeps measurements in memory up to an hour after a fault ends.</p>
      {measured.loaded && faults.length === 0 && <p class="muted">No recent fault on this host.</p>}
      {faults.map((f) => (
        <section key={f.faultId} class="card" data-fault-id={f.faultId} data-state={f.state}>
          <h3>
            {f.kind} <span class={`state state-${f.state}`}>{f.state}</span>
          </h3>
          <p class="small">
            <code>{f.faultId}</code>
            {f.runId && (
              <>
                {" "}
                · run <a href={`#/runs/${seg(f.runId)}`}>{f.runId}</a>
              </>
            )}{" "}
            · started {fmtTime(f.startedAt)}
            {f.endedAt !== null ? ` · ended ${fmtTime(f.endedAt)} (${fmtDuration(f.endedAt - (f.startedAt ?? f.endedAt))})` : ""}
          </p>
          <MeasurementChart fault={f} />
        </section>
      ))}
    </main>
  );
}
