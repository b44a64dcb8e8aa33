import { useState } from "react";
import { api } from "../api";
import { ErrorBanner, Page, useLoad, when } from "../ui";

type Event = { id: string; actor: string; api_key_id?: string; service: string; action: string; resource_type: string; resource_id: string; details?: Record<string, unknown>; created_at: string };

export default function Audit() {
  const [action, setAction] = useState("");
  const [resource, setResource] = useState("");
  const [filter, setFilter] = useState({ action: "", resource_type: "" });
  const [page, setPage] = useState(1);
  const list = useLoad(() => api.get("/api/v1/observability/audit", { ...filter, page, page_size: 50 }), [filter, page]);
  const events: Event[] = list.data?.items ?? [];
  return (
    <Page title="Audit log">
      <form
        className="toolbar"
        aria-label="Filter the audit log"
        onSubmit={(e) => {
          e.preventDefault();
          setPage(1);
          setFilter({ action, resource_type: resource });
        }}
      >
        <label htmlFor="audit-action">Action</label>
        <input id="audit-action" value={action} onChange={(e) => setAction(e.target.value)} placeholder="agent.create" />
        <label htmlFor="audit-resource">Resource type</label>
        <input id="audit-resource" value={resource} onChange={(e) => setResource(e.target.value)} placeholder="agent" />
        <button type="submit">Filter</button>
      </form>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Audit events" aria-busy={list.loading}>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Action</th>
            <th scope="col">Resource</th>
            <th scope="col">Actor</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => (
            <tr key={e.id} data-action={e.action}>
              <td>{when(e.created_at)}</td>
              <td>
                <code>{e.action}</code>
              </td>
              <td>
                {e.resource_type} <span className="muted">{e.resource_id}</span>
              </td>
              <td className="muted">{e.api_key_id ? `key ${e.api_key_id.slice(0, 8)}` : e.actor.slice(0, 8)}</td>
              <td>
                <code className="pre">{e.details && Object.keys(e.details).length ? JSON.stringify(e.details) : ""}</code>
              </td>
            </tr>
          ))}
          {!list.loading && events.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                Nothing recorded.
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
