import { useState, type FormEvent } from "react";
import { api, ApiError, session } from "../api";
import { ErrorBanner, Field, Page, Status, go, useLoad, when } from "../ui";

type Workflow = { id: string; name: string; slug: string; description?: string; status: string; version?: number; steps?: unknown[]; updated_at?: string };

export const EXAMPLE_STEPS = `[
  {"id": "greet", "type": "STEP_TYPE_TRANSFORM",
   "transform": {"expression": "inputs.name"}},
  {"id": "approve", "type": "STEP_TYPE_APPROVAL", "depends_on": ["greet"],
   "approval": {"message": "Greet {{name}}?"}},
  {"id": "done", "type": "STEP_TYPE_TRANSFORM", "depends_on": ["approve"],
   "transform": {"expression": "steps.greet.output"}}
]`;

export default function Workflows() {
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const [creating, setCreating] = useState(false);
  const list = useLoad(() => api.get("/api/v1/workflows", { search: query, page_size: 100 }), [query]);
  const workflows: Workflow[] = list.data?.items ?? [];
  return (
    <Page
      title="Workflows"
      actions={
        session.can("workflows:write") && (
          <button type="button" className="primary" onClick={() => setCreating(true)} disabled={creating}>
            New workflow
          </button>
        )
      }
    >
      {creating && <CreateWorkflow onCancel={() => setCreating(false)} />}
      <form
        role="search"
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery(search);
        }}
      >
        <label htmlFor="workflow-search">Search workflows</label>
        <input id="workflow-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        <button type="submit">Search</button>
      </form>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Workflows" aria-busy={list.loading}>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Steps</th>
            <th scope="col">Version</th>
            <th scope="col">Status</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {workflows.map((w) => (
            <tr key={w.id}>
              <td>
                <a href={`#/workflows/${w.id}`}>{w.name}</a> <span className="muted">{w.slug}</span>
              </td>
              <td>{w.steps?.length ?? 0}</td>
              <td>{w.version ?? "—"}</td>
              <td>
                <Status value={w.status} />
              </td>
              <td>{when(w.updated_at)}</td>
            </tr>
          ))}
          {!list.loading && workflows.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No workflows.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </Page>
  );
}

function CreateWorkflow({ onCancel }: { onCancel: () => void }) {
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [steps, setSteps] = useState(EXAMPLE_STEPS);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    let parsed;
    try {
      parsed = JSON.parse(steps);
    } catch (e) {
      setError(new ApiError(400, { error: "INVALID_JSON", message: `steps: ${(e as Error).message}`, details: { field_violations: [{ field: "steps", description: `not JSON: ${(e as Error).message}` }] } }));
      return;
    }
    setBusy(true);
    try {
      const workflow = await api.post("/api/v1/workflows", { name, description, steps: parsed });
      await api.post(`/api/v1/workflows/${workflow.id}/activate`, {});
      go(`workflows/${workflow.id}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const stepErrors = Object.entries(fields)
    .filter(([f]) => f.startsWith("steps"))
    .map(([f, d]) => `${f}: ${d}`)
    .join("\n");
  const known = ["name", "description"];
  const other = Object.keys(fields).some((f) => !known.includes(f) && !f.startsWith("steps"));
  return (
    <form className="card form" onSubmit={submit} aria-label="New workflow" noValidate>
      <h2>New workflow</h2>
      <Field label="Name" name="name" value={name} onChange={setName} error={fields.name} required />
      <Field label="Description" name="description" value={description} onChange={setDescription} error={fields.description} />
      <Field
        label="Steps (JSON, docs/workflows.md)"
        name="steps"
        value={steps}
        onChange={setSteps}
        error={stepErrors || undefined}
        multiline
      />
      <ErrorBanner error={error && (Object.keys(fields).length === 0 || other) ? error : undefined} />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Create and activate
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
