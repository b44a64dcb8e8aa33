import { useState } from "react";
import { Area, AreaChart, Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { api } from "../api";
import { ErrorBanner, Page, useLoad } from "../ui";

const RANGES: Record<string, { hours: number; interval: string; label: string }> = {
  "1h": { hours: 1, interval: "60s", label: "Last hour" },
  "24h": { hours: 24, interval: "3600s", label: "Last 24 hours" },
  "7d": { hours: 24 * 7, interval: "21600s", label: "Last 7 days" },
};

const tick = (hours: number) => (value: string) => {
  const d = new Date(value);
  return hours > 24 ? d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) : d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
};

export default function Overview() {
  const [range, setRange] = useState("24h");
  const { hours, interval } = RANGES[range];
  const data = useLoad(async () => {
    const end = new Date();
    const start = new Date(end.getTime() - hours * 3600_000);
    const q = { start_time: start.toISOString(), end_time: end.toISOString(), interval };
    const [summary, volume, errors, latency, active] = await Promise.all([
      api.get("/api/v1/analytics/summary", { start_time: q.start_time, end_time: q.end_time }),
      api.get("/api/v1/analytics/call-volume", q),
      api.get("/api/v1/analytics/errors", q),
      api.get("/api/v1/analytics/provider-latency", q),
      api.get("/api/v1/analytics/active-calls"),
    ]);
    return { summary, volume, errors, latency, active };
  }, [range]);
  const d = data.data;
  const s = d?.summary ?? {};
  const figures: [string, string][] = [
    ["Calls", String(s.total_calls ?? 0)],
    ["Success rate", `${Math.round((s.success_rate ?? 0) * ((s.success_rate ?? 0) <= 1 ? 100 : 1))}%`],
    ["Failed calls", String(s.failed_calls ?? 0)],
    ["Active calls", String(d?.active?.total ?? s.active_calls ?? 0)],
    ["Avg. duration", `${Math.round(s.average_duration_ms ?? 0)} ms`],
    ["Tokens", String(s.total_tokens ?? 0)],
    ["Cost", `$${Number(s.total_cost_usd ?? 0).toFixed(4)}`],
    ["Executions", `${s.workflow_executions ?? 0} (${s.failed_workflow_executions ?? 0} failed)`],
  ];
  return (
    <Page
      title="Overview"
      actions={
        <>
          <label htmlFor="range">Time range</label>
          <select id="range" value={range} onChange={(e) => setRange(e.target.value)}>
            {Object.entries(RANGES).map(([key, r]) => (
              <option key={key} value={key}>
                {r.label}
              </option>
            ))}
          </select>
          <button type="button" onClick={data.reload}>
            Refresh
          </button>
        </>
      }
    >
      <ErrorBanner error={data.error} />
      <ul className="figures" aria-label="Summary">
        {figures.map(([name, value]) => (
          <li key={name} className="card">
            <span className="muted">{name}</span>
            <strong>{value}</strong>
          </li>
        ))}
      </ul>
      {d && (
        <div className="charts">
          <figure className="card">
            <figcaption>Call volume</figcaption>
            <ResponsiveContainer width="100%" height={220}>
              <BarChart data={d.volume.points ?? []}>
                <CartesianGrid strokeDasharray="3 3" className="chart-grid" />
                <XAxis dataKey="timestamp" tickFormatter={tick(hours)} minTickGap={30} />
                <YAxis allowDecimals={false} />
                <Tooltip labelFormatter={(v) => new Date(String(v)).toLocaleString()} />
                <Legend />
                <Bar dataKey="completed" stackId="1" fill="#2f9e44" />
                <Bar dataKey="failed" stackId="1" fill="#e03131" />
              </BarChart>
            </ResponsiveContainer>
          </figure>
          <figure className="card">
            <figcaption>Errors</figcaption>
            <ResponsiveContainer width="100%" height={220}>
              <BarChart data={d.errors.points ?? []}>
                <CartesianGrid strokeDasharray="3 3" className="chart-grid" />
                <XAxis dataKey="timestamp" tickFormatter={tick(hours)} minTickGap={30} />
                <YAxis allowDecimals={false} />
                <Tooltip labelFormatter={(v) => new Date(String(v)).toLocaleString()} />
                <Bar dataKey="count" fill="#e03131" name="errors" />
              </BarChart>
            </ResponsiveContainer>
          </figure>
          <figure className="card">
            <figcaption>Latency by provider (ms)</figcaption>
            <ResponsiveContainer width="100%" height={220}>
              <BarChart data={(d.latency.providers ?? []).map((p: Record<string, unknown>) => ({ ...p, name: p.provider }))}>
                <CartesianGrid strokeDasharray="3 3" className="chart-grid" />
                <XAxis dataKey="name" />
                <YAxis />
                <Tooltip />
                <Legend />
                <Bar dataKey="p50_ms" fill="#4f6bed" name="p50" />
                <Bar dataKey="p95_ms" fill="#f59f00" name="p95" />
              </BarChart>
            </ResponsiveContainer>
          </figure>
          <figure className="card">
            <figcaption>Active calls (last hour, peak per minute)</figcaption>
            <ResponsiveContainer width="100%" height={220}>
              <AreaChart data={d.active.points ?? []}>
                <CartesianGrid strokeDasharray="3 3" className="chart-grid" />
                <XAxis dataKey="timestamp" tickFormatter={tick(1)} minTickGap={30} />
                <YAxis allowDecimals={false} />
                <Tooltip labelFormatter={(v) => new Date(String(v)).toLocaleString()} />
                <Area type="stepAfter" dataKey="peak" stroke="#4f6bed" fill="#4f6bed" fillOpacity={0.3} />
              </AreaChart>
            </ResponsiveContainer>
          </figure>
        </div>
      )}
    </Page>
  );
}
