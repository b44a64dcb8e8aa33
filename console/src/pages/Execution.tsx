import { useEffect, useState } from "react";
import { api, openSocket, session } from "../api";
import { ErrorBanner, Page, Status, useLoad, when } from "../ui";
import { StepGraph } from "./WorkflowDetail";

type StepState = {
  step_id: string;
  status: string;
  attempts?: number;
  started_at?: string;
  ended_at?: string;
  output?: unknown;
  error?: { code?: string; message?: string } | string;
  decisions?: { user_id?: string; approved?: boolean; comment?: string }[];
};
type Exec = {
  id: string;
  workflow_id: string;
  workflow_slug?: string;
  workflow_version?: number;
  status: string;
  progress?: number;
  current_phase?: string;
  step_states?: StepState[];
  inputs?: unknown;
  outputs?: unknown;
  errors?: unknown[];
  created_at?: string;
  ended_at?: string;
};

const ENDED = ["EXECUTION_STATUS_COMPLETED", "EXECUTION_STATUS_FAILED", "EXECUTION_STATUS_CANCELLED", "EXECUTION_STATUS_TERMINATED"];

/** One execution, live: the WebSocket /ws/{execution id} (a ticket first), polling if it fails. */
export default function Execution({ id }: { id: string }) {
  const [execution, setExecution] = useState<Exec>();
  const [error, setError] = useState<unknown>();
  const [live, setLive] = useState("connecting");
  const [busy, setBusy] = useState(false);
  const workflow = useLoad(() => (execution ? api.get(`/api/v1/workflows/${execution.workflow_id}`) : Promise.resolve(undefined)), [execution?.workflow_id]);

  useEffect(() => {
    let closed = false;
    let socket: WebSocket | undefined;
    let timer: number | undefined;
    let inFlight = false;
    // The REST answer is the truth: read on every live event (at most one read at a time) and
    // every 2 s until the execution ends, so a missed or reordered event never sticks.
    const poll = async () => {
      if (inFlight || closed) return;
      inFlight = true;
      window.clearTimeout(timer);
      try {
        const e: Exec = await api.get(`/api/v1/workflows/executions/${id}`);
        if (closed) return;
        setExecution(e);
        if (!ENDED.includes(e.status)) timer = window.setTimeout(poll, 2000);
      } catch (e) {
        if (!closed) setError(e);
      } finally {
        inFlight = false;
      }
    };
    poll().then(async () => {
      try {
        socket = await openSocket(`/ws/${id}`);
      } catch {
        setLive("polling");
        return;
      }
      if (closed) return socket.close();
      socket.onopen = () => setLive("live");
      socket.onmessage = (m) => {
        const event = JSON.parse(m.data);
        if (event.type === "state" || event.type === "execution.progress") {
          setExecution((old) => (old ? { ...old, ...event.payload } : old));
          poll();
        }
      };
      socket.onclose = () => {
        if (closed) return;
        setLive("ended");
        poll();
      };
      socket.onerror = () => setLive("polling");
    });
    return () => {
      closed = true;
      window.clearTimeout(timer);
      socket?.close();
    };
  }, [id]);

  async function act(path: string, body: unknown = {}) {
    setBusy(true);
    setError(undefined);
    try {
      setExecution(await api.post(`/api/v1/workflows/executions/${id}/${path}`, body));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const e = execution;
  const running = e && !ENDED.includes(e.status);
  const canExecute = session.can("workflows:execute");
  const states = Object.fromEntries((e?.step_states ?? []).map((s) => [s.step_id, s.status]));
  return (
    <Page
      title={`Execution ${id.slice(0, 8)}`}
      actions={
        running && canExecute && (
          <button type="button" className="danger" disabled={busy} onClick={() => act("cancel")}>
            Cancel
          </button>
        )
      }
    >
      {e && (
        <p>
          <a href={`#/workflows/${e.workflow_id}`}>← {e.workflow_slug || "workflow"}</a>
        </p>
      )}
      <ErrorBanner error={error} />
      {e && (
        <>
          <p className="summary">
            <span data-testid="execution-status">
              <Status value={e.status} />
            </span>{" "}
            <progress max={100} value={e.progress ?? 0} aria-label="Progress" /> {Math.round(e.progress ?? 0)}%{" "}
            {e.current_phase && <>· now: {e.current_phase}</>} · <span className="muted">{live}</span>
          </p>
          {workflow.data && (
            <div className="card scroll">
              <StepGraph steps={workflow.data.steps ?? []} states={states} />
            </div>
          )}
          <table className="grid" aria-label="Steps">
            <thead>
              <tr>
                <th scope="col">Step</th>
                <th scope="col">Status</th>
                <th scope="col">Attempts</th>
                <th scope="col">Output or error</th>
                <th scope="col"></th>
              </tr>
            </thead>
            <tbody>
              {(e.step_states ?? []).map((s) => (
                <tr key={s.step_id} data-step={s.step_id}>
                  <td>{s.step_id}</td>
                  <td>
                    <Status value={s.status} />
                  </td>
                  <td>{s.attempts ?? 0}</td>
                  <td>
                    <code className="pre">
                      {s.error ? JSON.stringify(s.error) : s.output !== undefined ? JSON.stringify(s.output) : ""}
                    </code>
                  </td>
                  <td>
                    {s.status === "STEP_STATUS_WAITING_APPROVAL" && canExecute && (
                      <span className="actions">
                        <button type="button" className="primary" disabled={busy} onClick={() => act(`steps/${s.step_id}/approve`, { comment: "approved in the console" })}>
                          Approve {s.step_id}
                        </button>
                        <button type="button" className="danger" disabled={busy} onClick={() => act(`steps/${s.step_id}/reject`, { comment: "rejected in the console" })}>
                          Reject {s.step_id}
                        </button>
                      </span>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="columns">
            <div className="card">
              <h2>Inputs</h2>
              <pre>{JSON.stringify(e.inputs ?? {}, null, 2)}</pre>
            </div>
            <div className="card">
              <h2>Outputs</h2>
              <pre data-testid="execution-outputs">{JSON.stringify(e.outputs ?? {}, null, 2)}</pre>
            </div>
          </div>
          {(e.errors?.length ?? 0) > 0 && (
            <div className="card">
              <h2>Errors</h2>
              <pre>{JSON.stringify(e.errors, null, 2)}</pre>
            </div>
          )}
          <p className="muted">
            Started {when(e.created_at)} · ended {when(e.ended_at)} · version {e.workflow_version}
          </p>
        </>
      )}
    </Page>
  );
}
