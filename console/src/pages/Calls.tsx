import { useState } from "react";
import { api } from "../api";
import { ErrorBanner, Page, Status, useLoad, when } from "../ui";

type Call = { id: string; agent_id: string; status: string; model?: string; provider?: string; started_at?: string; duration_ms?: number; prompt_tokens?: number; completion_tokens?: number; cost_usd?: number };

const STATUSES = ["", "CALL_STATUS_ACTIVE", "CALL_STATUS_COMPLETED", "CALL_STATUS_FAILED", "CALL_STATUS_CANCELLED"];

export default function Calls() {
  const [status, setStatus] = useState("");
  const [agent, setAgent] = useState("");
  const [filter, setFilter] = useState({ status: "", agent_id: "" });
  const [page, setPage] = useState(1);
  const list = useLoad(() => api.get("/api/v1/calls", { ...filter, page, page_size: 25, order_by: "-started_at" }), [filter, page]);
  const calls: Call[] = list.data?.items ?? [];
  return (
    <Page title="Calls">
      <form
        className="toolbar"
        aria-label="Filter calls"
        onSubmit={(e) => {
          e.preventDefault();
          setPage(1);
          setFilter({ status, agent_id: agent });
        }}
      >
        <label htmlFor="call-status">Status</label>
        <select id="call-status" value={status} onChange={(e) => setStatus(e.target.value)}>
          {STATUSES.map((s) => (
            <option key={s} value={s}>
              {s ? s.replace("CALL_STATUS_", "").toLowerCase() : "any"}
            </option>
          ))}
        </select>
        <label htmlFor="call-agent">Agent</label>
        <input id="call-agent" value={agent} onChange={(e) => setAgent(e.target.value)} placeholder="id or name" />
        <button type="submit">Filter</button>
      </form>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Calls" aria-busy={list.loading}>
        <thead>
          <tr>
            <th scope="col">Call</th>
            <th scope="col">Status</th>
            <th scope="col">Model</th>
            <th scope="col">Tokens</th>
            <th scope="col">Cost</th>
            <th scope="col">Latency</th>
            <th scope="col">Started</th>
          </tr>
        </thead>
        <tbody>
          {calls.map((c) => (
            <tr key={c.id}>
              <td>
                <a href={`#/calls/${c.id}`}>{c.id.slice(0, 8)}</a>
              </td>
              <td>
                <Status value={c.status} />
              </td>
              <td>{c.model || "—"}</td>
              <td>{(c.prompt_tokens ?? 0) + (c.completion_tokens ?? 0)}</td>
              <td>${Number(c.cost_usd ?? 0).toFixed(5)}</td>
              <td>{c.duration_ms ?? 0} ms</td>
              <td>{when(c.started_at)}</td>
            </tr>
          ))}
          {!list.loading && calls.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                No calls.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <nav className="pager" aria-label="Pages">
        <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>
          Previous
        </button>
        <span>
          Page {page} of {list.data?.pages || 1}
        </span>
        <button type="button" disabled={page >= (list.data?.pages ?? 1)} onClick={() => setPage(page + 1)}>
          Next
        </button>
      </nav>
    </Page>
  );
}
