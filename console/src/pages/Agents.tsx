import { useState, type FormEvent } from "react";
import { api, ApiError, session } from "../api";
import { ErrorBanner, Field, Page, Status, go, useLoad, when } from "../ui";

type Agent = { id: string; name: string; description?: string; model?: string; status: string; updated_at?: string };

export default function Agents() {
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const [creating, setCreating] = useState(false);
  const list = useLoad(() => api.get("/api/v1/agents", { search: query, page_size: 100, order_by: "-updated_at" }), [query]);
  const agents: Agent[] = list.data?.items ?? [];

  return (
    <Page
      title="Agents"
      actions={
        session.can("agents:write") && (
          <button type="button" className="primary" onClick={() => setCreating(true)} disabled={creating}>
            New agent
          </button>
        )
      }
    >
      {creating && <CreateAgent onCancel={() => setCreating(false)} />}
      <form
        role="search"
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery(search);
        }}
      >
        <label htmlFor="agent-search">Search agents</label>
        <input id="agent-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="name or description" />
        <button type="submit">Search</button>
      </form>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Agents" aria-busy={list.loading}>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Model</th>
            <th scope="col">Status</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {agents.map((agent) => (
            <tr key={agent.id}>
              <td>
                <a href={`#/agents/${agent.id}`}>{agent.name}</a>
                {agent.description && <div className="muted">{agent.description}</div>}
              </td>
              <td>{agent.model || "—"}</td>
              <td>
                <Status value={agent.status} />
              </td>
              <td>{when(agent.updated_at)}</td>
            </tr>
          ))}
          {!list.loading && agents.length === 0 && (
            <tr>
              <td colSpan={4} className="muted">
                No agents{query ? ` matching “${query}”` : ""}.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </Page>
  );
}

function CreateAgent({ onCancel }: { onCancel: () => void }) {
  const [form, setForm] = useState({ name: "", model: "", description: "", system_prompt: "" });
  const [tools, setTools] = useState<string[]>([]);
  const toolList = useLoad(() => (session.can("tools:read") ? api.get("/api/v1/tools", { page_size: 100 }) : Promise.resolve({ items: [] })), []);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const models = useLoad(() => api.get("/api/v1/master-data/models", { page_size: 100 }).catch(() => ({ items: [] })), []);
  const set = (key: keyof typeof form) => (value: string) => setForm({ ...form, [key]: value });

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const agent = await api.post("/api/v1/agents", { ...form, tools });
      go(`agents/${agent.id}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const toolErrors = Object.entries(fields).filter(([f]) => f.startsWith("tools")).map(([f, d]) => `${f}: ${d}`).join("\n");
  const unplaced = error instanceof ApiError ? Object.keys(fields).filter((f) => !(f in form) && !f.startsWith("tools")) : [];
  return (
    <form className="card form" onSubmit={submit} aria-label="New agent" noValidate>
      <h2>New agent</h2>
      <Field label="Name" name="name" value={form.name} onChange={set("name")} error={fields.name} required hint="Letters, digits, . _ - (unique in the tenant)" />
      <Field label="Model" name="model" value={form.model} onChange={set("model")} error={fields.model} list="model-names" hint="A model of the master data" />
      <datalist id="model-names">
        {(models.data?.items ?? []).map((m: { name: string }) => (
          <option key={m.name} value={m.name} />
        ))}
      </datalist>
      <div className={`field${toolErrors ? " invalid" : ""}`}>
        <label htmlFor="agent-tools">Tools</label>
        <select
          id="agent-tools"
          multiple
          value={tools}
          aria-invalid={toolErrors ? true : undefined}
          aria-describedby={toolErrors ? "agent-tools-error" : undefined}
          onChange={(e) => setTools(Array.from(e.target.selectedOptions, (o) => o.value))}
        >
          {(toolList.data?.items ?? []).map((t: { id: string; name: string }) => (
            <option key={t.id} value={t.name}>
              {t.name}
            </option>
          ))}
        </select>
        {toolErrors && (
          <small id="agent-tools-error" className="field-error" role="alert" data-field="tools">
            {toolErrors}
          </small>
        )}
      </div>
      <Field label="Description" name="description" value={form.description} onChange={set("description")} error={fields.description} />
      <Field label="System prompt" name="system_prompt" value={form.system_prompt} onChange={set("system_prompt")} error={fields.system_prompt} multiline />
      <ErrorBanner error={error && (Object.keys(fields).length === 0 || unplaced.length) ? error : undefined} />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Create agent
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
