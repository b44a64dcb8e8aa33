import { useState, type FormEvent } from "react";
import { api, ApiError, session } from "../api";
import { ErrorBanner, Field, Page, Status, go, useLoad, when } from "../ui";

type Step = { id: string; type: string; depends_on?: string[] };

/** The definition as its graph: steps in layers by their dependencies, edges drawn in SVG. */
export function StepGraph({ steps, states }: { steps: Step[]; states?: Record<string, string> }) {
  const depth: Record<string, number> = {};
  const layerOf = (id: string, seen = new Set<string>()): number => {
    if (id in depth) return depth[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    const step = steps.find((s) => s.id === id);
    const d = Math.max(-1, ...(step?.depends_on ?? []).map((p) => layerOf(p, seen))) + 1;
    return (depth[id] = d);
  };
  steps.forEach((s) => layerOf(s.id));
  const layers: string[][] = [];
  for (const s of steps) (layers[depth[s.id]] ??= []).push(s.id);
  const W = 150, H = 44, GX = 40, GY = 24;
  const pos: Record<string, { x: number; y: number }> = {};
  layers.forEach((ids, col) => ids.forEach((id, row) => (pos[id] = { x: col * (W + GX) + 4, y: row * (H + GY) + 4 })));
  const width = layers.length * (W + GX);
  const height = Math.max(...layers.map((l) => l.length)) * (H + GY) + 4;
  return (
    <svg className="graph" role="img" aria-label="Workflow steps" width={width} height={height} viewBox={`0 0 ${width} ${height}`}>
      {steps.flatMap((s) =>
        (s.depends_on ?? []).filter((p) => pos[p]).map((p) => (
          <line key={`${p}-${s.id}`} x1={pos[p].x + W} y1={pos[p].y + H / 2} x2={pos[s.id].x} y2={pos[s.id].y + H / 2} className="edge" />
        )),
      )}
      {steps.map((s) => {
        const state = states?.[s.id]?.replace("STEP_STATUS_", "").toLowerCase() ?? "";
        return (
          <g key={s.id} transform={`translate(${pos[s.id].x},${pos[s.id].y})`} className={`node ${state}`} data-step={s.id} data-state={state}>
            <rect width={W} height={H} rx={6} />
            <text x={8} y={18} className="node-id">{s.id}</text>
            <text x={8} y={35} className="node-type">{s.type.replace("STEP_TYPE_", "").toLowerCase()}{state ? ` · ${state.replace(/_/g, " ")}` : ""}</text>
          </g>
        );
      })}
    </svg>
  );
}

export default function WorkflowDetail({ id }: { id: string }) {
  const workflow = useLoad(() => api.get(`/api/v1/workflows/${id}`), [id]);
  const executions = useLoad(() => api.get(`/api/v1/workflows/${id}/executions`, { page_size: 20 }), [id]);
  const [inputs, setInputs] = useState('{"name": "world"}');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [editing, setEditing] = useState(false);
  const w = workflow.data;

  async function run(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    let parsed;
    try {
      parsed = inputs.trim() ? JSON.parse(inputs) : {};
    } catch (e) {
      setError(new ApiError(400, { error: "INVALID_JSON", message: (e as Error).message, details: { field_violations: [{ field: "inputs", description: `not JSON: ${(e as Error).message}` }] } }));
      return;
    }
    setBusy(true);
    try {
      const execution = await api.post(`/api/v1/workflows/${id}/execute`, { inputs: parsed });
      go(`executions/${execution.id}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  async function act(action: string) {
    setError(undefined);
    try {
      await api.post(`/api/v1/workflows/${id}/${action}`, {});
      workflow.reload();
    } catch (e) {
      setError(e);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const inputErrors = Object.entries(fields).filter(([f]) => f.startsWith("inputs")).map(([f, d]) => `${f}: ${d}`).join("\n");
  return (
    <Page
      title={w ? w.name : "Workflow"}
      actions={
        w && session.can("workflows:write") && (
          <>
            <button type="button" disabled={editing} onClick={() => setEditing(true)}>
              Edit
            </button>
            {w.status === "WORKFLOW_STATUS_ACTIVE" ? (
              <button type="button" onClick={() => act("deactivate")}>Deactivate</button>
            ) : (
              <button type="button" onClick={() => act("activate")}>Activate</button>
            )}
          </>
        )
      }
    >
      <p>
        <a href="#/workflows">← All workflows</a>
      </p>
      <ErrorBanner error={workflow.error || (error && !inputErrors ? error : undefined)} />
      {w && editing && (
        <EditWorkflow
          workflow={w}
          onDone={() => {
            setEditing(false);
            workflow.reload();
          }}
        />
      )}
      {w && (
        <>
          <p>
            <Status value={w.status} /> version {w.version} · <code>{w.slug}</code> {w.description && `· ${w.description}`}
          </p>
          <div className="card scroll">
            <StepGraph steps={w.steps ?? []} />
          </div>
          {session.can("workflows:execute") && (
            <form className="card form" onSubmit={run} aria-label="Run workflow">
              <h2>Run</h2>
              <Field label="Inputs (JSON)" name="inputs" value={inputs} onChange={setInputs} error={inputErrors || undefined} multiline />
              <button type="submit" className="primary" disabled={busy}>
                Run workflow
              </button>
            </form>
          )}
          <h2>Executions</h2>
          <ErrorBanner error={executions.error} />
          <table className="grid" aria-label="Executions">
            <thead>
              <tr>
                <th scope="col">Execution</th>
                <th scope="col">Status</th>
                <th scope="col">Progress</th>
                <th scope="col">Started</th>
              </tr>
            </thead>
            <tbody>
              {(executions.data?.items ?? []).map((e: { id: string; status: string; progress?: number; created_at?: string }) => (
                <tr key={e.id}>
                  <td>
                    <a href={`#/executions/${e.id}`}>{e.id.slice(0, 8)}</a>
                  </td>
                  <td>
                    <Status value={e.status} />
                  </td>
                  <td>{Math.round(e.progress ?? 0)}%</td>
                  <td>{when(e.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </Page>
  );
}

/** A new version of the definition (`?update_mask=description,steps`); running executions keep theirs. */
function EditWorkflow({ workflow, onDone }: { workflow: { id: string; description?: string; steps?: unknown[] }; onDone: () => void }) {
  const [description, setDescription] = useState(workflow.description ?? "");
  const [steps, setSteps] = useState(JSON.stringify(workflow.steps ?? [], null, 2));
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    let parsed;
    try {
      parsed = JSON.parse(steps);
    } catch (e) {
      setError(new ApiError(400, { error: "INVALID_JSON", message: (e as Error).message, details: { field_violations: [{ field: "steps", description: `not JSON: ${(e as Error).message}` }] } }));
      return;
    }
    setBusy(true);
    try {
      await api.put(`/api/v1/workflows/${workflow.id}?update_mask=description,steps`, { description, steps: parsed });
      onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const stepErrors = Object.entries(fields).filter(([f]) => f.startsWith("steps")).map(([f, d]) => `${f}: ${d}`).join("\n");
  const other = Object.keys(fields).some((f) => f !== "description" && !f.startsWith("steps"));
  return (
    <form className="card form" onSubmit={submit} aria-label="Edit workflow" noValidate>
      <h2>Edit the definition</h2>
      <Field label="Description" name="description" value={description} onChange={setDescription} error={fields.description} />
      <Field label="Steps (JSON)" name="steps" value={steps} onChange={setSteps} error={stepErrors || undefined} multiline />
      <ErrorBanner error={error && (Object.keys(fields).length === 0 || other) ? error : undefined} />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Save as a new version
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}
