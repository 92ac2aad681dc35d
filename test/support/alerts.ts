/** Alertmanager webhook payloads (version 4), as Alertmanager sends them, for tests and benchmarks. */
export function alertmanagerPayload(
  status: "firing" | "resolved",
  opts: { alertname: string; labels?: Record<string, string>; fingerprint: string; summary?: string },
) {
  const labels = { alertname: opts.alertname, ...(opts.labels ?? {}) };
  return {
    version: "4",
    groupKey: `{}:{alertname="${opts.alertname}"}`,
    truncatedAlerts: 0,
    status,
    receiver: "firedrill",
    groupLabels: { alertname: opts.alertname },
    commonLabels: labels,
    commonAnnotations: {},
    externalURL: "http://alertmanager.invalid",
    alerts: [
      {
        status,
        labels,
        annotations: opts.summary ? { summary: opts.summary } : {},
        startsAt: new Date().toISOString(),
        endsAt: status === "resolved" ? new Date().toISOString() : "0001-01-01T00:00:00Z",
        generatorURL: "http://prometheus.invalid/graph",
        fingerprint: opts.fingerprint,
      },
    ],
  };
}
