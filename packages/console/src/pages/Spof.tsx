/** SPOF: single points of failure among the Auto Scaling groups and the agents' label groups, with why. */
import { get, messageOf } from "../api.js";
import type { SpofReportJson } from "../api.js";
import { ListTable } from "../components/ListTable.js";
import { useState } from "preact/hooks";
import { plural } from "../format.js";
import { usePoll } from "../hooks.js";

export function SpofPage() {
  const [region, setRegion] = useState("");
  const [draft, setDraft] = useState("");
  const [failure, setFailure] = useState<string | null>(null);
  const report = usePoll(
    "spof",
    async () => {
      try {
        const r = await get<SpofReportJson>(`/api/v1/spof${region ? `?region=${encodeURIComponent(region)}` : ""}`);
        setFailure(null);
        return r;
      } catch (err) {
        setFailure(messageOf(err));
        throw err;
      }
    },
    null,
    [region],
  );
  const r = report.data;
  return (
    <main>
      <h1>Single points of failure</h1>
      <form
        class="filter"
        onSubmit={(e) => {
          e.preventDefault();
          setRegion(draft.trim());
        }}
      >
        <label for="spof-region">AWS region</label>
        <input id="spof-region" name="region" placeholder="the control plane's default" value={draft} onInput={(e) => setDraft((e.currentTarget as HTMLInputElement).value)} />
        <button type="submit">Check</button>
      </form>
      <section data-testid="spof" aria-busy={!report.loaded && !failure}>
        {failure && <p class="bad">Could not check: {failure}</p>}
        {r && !failure && (
          <>
            <p class="summary">
              {r.groupsChecked === null ? "No Auto Scaling group checked" : `${plural(r.groupsChecked, "Auto Scaling group")} checked${r.region ? ` in ${r.region}` : ""}`}; {plural(r.hostsChecked, "connected host")} checked by label{" "}
              {r.labelKeys.join(", ")}.
            </p>
            {r.note && <p class="notice">{r.note}</p>}
            {r.spofs.length === 0 ? (
              <p class="ok">No single point of failure found.</p>
            ) : (
              <ListTable columns={["What", "Kind", "Why, and what to do"]}>
                {r.spofs.map((s, i) => (
                  <tr key={`${s.kind}:${s.subject}:${i}`} data-kind={s.kind}>
                    <td>
                      <code>{s.subject}</code>
                    </td>
                    <td>{s.kind}</td>
                    <td>{s.why}</td>
                  </tr>
                ))}
              </ListTable>
            )}
          </>
        )}
      </section>
    </main>
  );
}
