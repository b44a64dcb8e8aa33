import { useState } from "react";
import { api } from "../api";
import { ErrorBanner, Page, useLoad, when } from "../ui";

type Policy = { id: string; name: string; description?: string; effect?: string; priority?: number; enabled?: boolean; version?: number; updated_at?: string };
type Decision = { id: string; created_at: string; intent?: string; subject?: string; action?: string; allowed?: boolean; reason?: string; policy_id?: string; policy_version?: number };
type Budget = { name: string; tokens_per_day?: string; tokens_today?: string; usd_today?: number; cents_per_day?: string; usd_this_month?: number; tokens_remaining?: string; usd_remaining?: number; day_resets_at?: string };

/** Governance, read: policies (and their versions), the decision log, budgets and their use. */
export default function Governance() {
  const policies = useLoad(() => api.get("/api/v1/governance/policies", { page_size: 100 }), []);
  const budgets = useLoad(() => api.get("/api/v1/governance/budgets"), []);
  const [allowed, setAllowed] = useState("");
  const decisions = useLoad(() => api.get("/api/v1/governance/decisions", { page_size: 50, allowed }), [allowed]);
  const [open, setOpen] = useState("");
  const versions = useLoad(() => (open ? api.get(`/api/v1/governance/policies/${open}/versions`, { page_size: 50 }) : Promise.resolve({ items: [] })), [open]);
  return (
    <Page title="Governance">
      <section className="card" aria-labelledby="policies-title">
        <h2 id="policies-title">Policies</h2>
        <ErrorBanner error={policies.error} />
        <table className="grid" aria-label="Policies">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Effect</th>
              <th scope="col">Priority</th>
              <th scope="col">Enabled</th>
              <th scope="col">Version</th>
              <th scope="col"></th>
            </tr>
          </thead>
          <tbody>
            {(policies.data?.items ?? []).map((p: Policy) => (
              <tr key={p.id}>
                <td>
                  {p.name}
                  {p.description && <div className="muted">{p.description}</div>}
                </td>
                <td>{String(p.effect ?? "").replace(/^.*_EFFECT_/, "").toLowerCase()}</td>
                <td>{p.priority ?? 0}</td>
                <td>{p.enabled === false ? "no" : "yes"}</td>
                <td>{p.version ?? 1}</td>
                <td>
                  <button type="button" onClick={() => setOpen(open === p.id ? "" : p.id)} aria-expanded={open === p.id}>
                    Versions of {p.name}
                  </button>
                </td>
              </tr>
            ))}
            {!policies.loading && !(policies.data?.items ?? []).length && (
              <tr>
                <td colSpan={6} className="muted">No policies: every action is allowed by default rules.</td>
              </tr>
            )}
          </tbody>
        </table>
        {open && (
          <div className="card">
            <h3>Versions</h3>
            <ErrorBanner error={versions.error} />
            <pre>{JSON.stringify(versions.data?.items ?? [], null, 2)}</pre>
          </div>
        )}
      </section>
      <section className="card" aria-labelledby="budgets-title">
        <h2 id="budgets-title">Budgets and usage</h2>
        <ErrorBanner error={budgets.error} />
        <table className="grid" aria-label="Budgets">
          <thead>
            <tr>
              <th scope="col">Budget</th>
              <th scope="col">Tokens today / per day</th>
              <th scope="col">USD today</th>
              <th scope="col">USD this month</th>
              <th scope="col">Remaining</th>
              <th scope="col">Day resets</th>
            </tr>
          </thead>
          <tbody>
            {(budgets.data?.items ?? []).map((b: Budget) => (
              <tr key={b.name}>
                <td>{b.name}</td>
                <td>
                  {b.tokens_today ?? 0} / {b.tokens_per_day && b.tokens_per_day !== "0" ? b.tokens_per_day : "∞"}
                </td>
                <td>${Number(b.usd_today ?? 0).toFixed(4)}</td>
                <td>${Number(b.usd_this_month ?? 0).toFixed(4)}</td>
                <td>
                  {Number(b.tokens_remaining ?? -1) < 0 ? "∞" : b.tokens_remaining} tokens,{" "}
                  {Number(b.usd_remaining ?? -1) < 0 ? "∞" : `$${Number(b.usd_remaining).toFixed(2)}`}
                </td>
                <td>{when(b.day_resets_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section className="card" aria-labelledby="decisions-title">
        <h2 id="decisions-title">Decision log</h2>
        <div className="toolbar">
          <label htmlFor="decision-allowed">Outcome</label>
          <select id="decision-allowed" value={allowed} onChange={(e) => setAllowed(e.target.value)}>
            <option value="">any</option>
            <option value="true">allowed</option>
            <option value="false">denied</option>
          </select>
        </div>
        <ErrorBanner error={decisions.error} />
        <table className="grid" aria-label="Decisions">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Intent</th>
              <th scope="col">Subject</th>
              <th scope="col">Outcome</th>
              <th scope="col">Reason</th>
            </tr>
          </thead>
          <tbody>
            {(decisions.data?.items ?? []).map((d: Decision) => (
              <tr key={d.id} data-allowed={String(!!d.allowed)}>
                <td>{when(d.created_at)}</td>
                <td>
                  <code>{d.intent || d.action}</code>
                </td>
                <td>{d.subject}</td>
                <td>{d.allowed ? "allowed" : "denied"}</td>
                <td>{d.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </Page>
  );
}
