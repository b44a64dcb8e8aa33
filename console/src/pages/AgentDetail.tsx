import { useEffect, useRef, useState, type FormEvent } from "react";
import { api, ApiError, session, streamEvents } from "../api";
import { ErrorBanner, Field, Page, Status, useLoad, when } from "../ui";

type Agent = {
  id: string;
  name: string;
  description?: string;
  model?: string;
  status: string;
  system_prompt?: string;
  tools?: string[];
  environment?: string;
  deployed_at?: string;
  version?: number;
};

export default function AgentDetail({ id }: { id: string }) {
  const agent = useLoad<Agent>(() => api.get(`/api/v1/agents/${id}`), [id]);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const [editing, setEditing] = useState(false);
  const a = agent.data;

  async function act(action: string) {
    setBusy(true);
    setError(undefined);
    try {
      await api.post(`/api/v1/agents/${id}/${action}`, {});
      agent.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const canWrite = session.can("agents:write");
  const status = a?.status ?? "";
  const actions = canWrite && a && (
    <>
      {status !== "AGENT_STATUS_ARCHIVED" && (
        <button type="button" disabled={busy || editing} onClick={() => setEditing(true)}>
          Edit
        </button>
      )}
      {(status === "AGENT_STATUS_DRAFT" || status === "AGENT_STATUS_INACTIVE") && (
        <button type="button" disabled={busy} onClick={() => act("activate")}>
          Activate
        </button>
      )}
      {status === "AGENT_STATUS_ACTIVE" && (
        <button type="button" className="primary" disabled={busy} onClick={() => act("deploy")}>
          Deploy
        </button>
      )}
      {status === "AGENT_STATUS_DEPLOYED" && (
        <button type="button" disabled={busy} onClick={() => act("undeploy")}>
          Undeploy
        </button>
      )}
      {status === "AGENT_STATUS_ACTIVE" && (
        <button type="button" disabled={busy} onClick={() => act("deactivate")}>
          Deactivate
        </button>
      )}
      {status !== "AGENT_STATUS_DEPLOYED" && status !== "AGENT_STATUS_ARCHIVED" && (
        <button
          type="button"
          className="danger"
          disabled={busy}
          onClick={() => confirm(`Retire ${a.name}? It becomes read-only.`) && act("archive")}
        >
          Retire
        </button>
      )}
    </>
  );

  return (
    <Page title={a ? a.name : "Agent"} actions={actions}>
      <p>
        <a href="#/agents">← All agents</a>
      </p>
      <ErrorBanner error={agent.error || error} />
      {a && editing && (
        <EditAgent
          agent={a}
          onDone={() => {
            setEditing(false);
            agent.reload();
          }}
        />
      )}
      {a && (
        <div className="columns">
          <dl className="card facts">
            <dt>Status</dt>
            <dd data-testid="agent-status">
              <Status value={a.status} />
            </dd>
            <dt>Description</dt>
            <dd data-testid="agent-description">{a.description || "—"}</dd>
            <dt>Model</dt>
            <dd>{a.model || "—"}</dd>
            <dt>Version</dt>
            <dd>{a.version ?? "—"}</dd>
            <dt>Environment</dt>
            <dd>{a.environment || "—"}</dd>
            <dt>Deployed</dt>
            <dd>{when(a.deployed_at)}</dd>
            <dt>Tools</dt>
            <dd>{a.tools?.length ? a.tools.join(", ") : "—"}</dd>
            <dt>System prompt</dt>
            <dd className="pre">{a.system_prompt || "—"}</dd>
          </dl>
          {session.can("agents:execute") && a.status !== "AGENT_STATUS_ARCHIVED" && <Chat agentId={a.id} />}
        </div>
      )}
    </Page>
  );
}

const EDITABLE = ["model", "description", "system_prompt"] as const;

/** Changes only the fields shown (`?update_mask=`): a new version of the agent. */
function EditAgent({ agent, onDone }: { agent: Agent; onDone: () => void }) {
  const [form, setForm] = useState({ model: agent.model ?? "", description: agent.description ?? "", system_prompt: agent.system_prompt ?? "" });
  const [tools, setTools] = useState((agent.tools ?? []).join(", "));
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const body = { ...form, tools: tools.split(",").map((t) => t.trim()).filter(Boolean) };
      await api.put(`/api/v1/agents/${agent.id}?update_mask=${[...EDITABLE, "tools"].join(",")}`, body);
      onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const toolErrors = Object.entries(fields).filter(([f]) => f.startsWith("tools")).map(([f, d]) => `${f}: ${d}`).join("\n");
  const other = Object.keys(fields).some((f) => !(EDITABLE as readonly string[]).includes(f) && !f.startsWith("tools"));
  return (
    <form className="card form" onSubmit={submit} aria-label="Edit agent" noValidate>
      <h2>Edit {agent.name}</h2>
      <Field label="Model" name="model" value={form.model} onChange={(v) => setForm({ ...form, model: v })} error={fields.model} />
      <Field label="Description" name="description" value={form.description} onChange={(v) => setForm({ ...form, description: v })} error={fields.description} />
      <Field label="System prompt" name="system_prompt" value={form.system_prompt} onChange={(v) => setForm({ ...form, system_prompt: v })} error={fields.system_prompt} multiline />
      <Field label="Tools (names, comma-separated)" name="tools" value={tools} onChange={setTools} error={toolErrors || undefined} />
      <ErrorBanner error={error && (Object.keys(fields).length === 0 || other) ? error : undefined} />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Save
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

type Turn = { role: "user" | "assistant"; content: string; tools?: ToolCall[]; callId?: string; status?: string };
type ToolCall = { id: string; name: string; arguments?: unknown; status?: string; output?: unknown; error?: unknown };
type Thread = { id: string; title?: string; message_count?: number; updated_at?: string };

function Chat({ agentId }: { agentId: string }) {
  const canReadThreads = session.can("calls:read");
  const threads = useLoad(
    () => (canReadThreads ? api.get("/api/v1/threads", { agent_id: agentId, page_size: 50 }) : Promise.resolve({ items: [] })),
    [agentId],
  );
  const [threadId, setThreadId] = useState<string>("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const [message, setMessage] = useState("");
  const [error, setError] = useState<unknown>();
  const [streaming, setStreaming] = useState(false);
  const abort = useRef<AbortController | null>(null);
  const log = useRef<HTMLOListElement>(null);
  // The thread this panel just started: its messages are already on screen.
  const started = useRef<string>("");

  useEffect(() => {
    if (threadId && threadId === started.current) return;
    if (!threadId) {
      setTurns([]);
      return;
    }
    api
      .get(`/api/v1/threads/${threadId}/messages`, { page_size: 100 })
      .then((page) =>
        setTurns(
          (page.items ?? []).map((m: { role: string; content: string; call_id?: string }) => ({
            role: m.role === "user" ? "user" : "assistant",
            content: m.content,
            callId: m.call_id,
          })),
        ),
      )
      .catch(setError);
  }, [threadId]);

  useEffect(() => {
    log.current?.lastElementChild?.scrollIntoView({ block: "nearest" });
  }, [turns]);

  function update(fn: (turn: Turn) => Turn) {
    setTurns((all) => (all.length && all[all.length - 1].role === "assistant" ? [...all.slice(0, -1), fn(all[all.length - 1])] : all));
  }

  async function send(event: FormEvent) {
    event.preventDefault();
    const text = message.trim();
    if (!text || streaming) return;
    setError(undefined);
    setStreaming(true);
    setMessage("");
    let thread = threadId;
    try {
      if (!thread) {
        const created = await api.post("/api/v1/threads", { agent_id: agentId, title: text.slice(0, 60) });
        thread = created.id as string;
        started.current = thread;
        setThreadId(thread);
        threads.reload();
      }
      setTurns((all) => [...all, { role: "user", content: text }, { role: "assistant", content: "", tools: [], status: "streaming" }]);
      abort.current = new AbortController();
      await streamEvents(
        `/api/v1/agents/${agentId}/interact/stream`,
        { message: text, thread_id: thread },
        (e) => {
          const type = e.type as string;
          if (type === "started") update((t) => ({ ...t, callId: e.call_id as string }));
          else if (type === "token") update((t) => ({ ...t, content: t.content + (e.text as string) }));
          else if (type === "tool_call.started" || type === "tool_call.ended") {
            const call = e.tool_call as ToolCall;
            update((t) => ({ ...t, tools: [...(t.tools ?? []).filter((c) => c.id !== call.id), { ...call, status: call.status ?? "RUNNING" }] }));
          } else if (type === "ended") {
            const result = e.result as { reply?: string; status?: string; reason?: string; error?: { message?: string } };
            update((t) => ({ ...t, content: result.reply ?? t.content, status: result.status }));
            if (result.status && result.status !== "CALL_STATUS_COMPLETED") {
              setError(new Error(`The call ended ${result.status.replace("CALL_STATUS_", "").toLowerCase()}: ${result.reason || result.error?.message || ""}`));
            }
          }
        },
        abort.current.signal,
      );
    } catch (e) {
      if ((e as Error).name !== "AbortError") setError(e);
      update((t) => (t && t.status === "streaming" ? { ...t, status: "failed" } : t));
    } finally {
      setStreaming(false);
      abort.current = null;
      threads.reload();
    }
  }

  const items: Thread[] = threads.data?.items ?? [];
  return (
    <section className="card chat" aria-labelledby="chat-title">
      <header className="chat-header">
        <h2 id="chat-title">Chat</h2>
        <label htmlFor="thread">Thread</label>
        <select id="thread" value={threadId} onChange={(e) => setThreadId(e.target.value)} disabled={streaming}>
          <option value="">New thread</option>
          {items.map((t) => (
            <option key={t.id} value={t.id}>
              {t.title || t.id.slice(0, 8)} ({t.message_count ?? 0})
            </option>
          ))}
        </select>
      </header>
      <ol className="turns" ref={log} aria-live="polite" data-testid="chat-log">
        {turns.map((turn, i) => (
          <li key={i} className={`turn ${turn.role}`} data-status={turn.status}>
            <span className="who">{turn.role === "user" ? "You" : "Agent"}</span>
            {(turn.tools ?? []).map((call) => (
              <div key={call.id} className="tool-call" data-testid="tool-call">
                <span className="muted">tool</span> <code>{call.name}</code>({JSON.stringify(call.arguments ?? {})}) —{" "}
                <span>{String(call.status ?? "running").toLowerCase()}</span>
                {call.output !== undefined && <code className="output"> → {JSON.stringify(call.output)}</code>}
              </div>
            ))}
            <div className="content" data-testid={turn.role === "assistant" ? "reply" : undefined}>
              {turn.content}
              {turn.status === "streaming" && <span className="cursor" aria-hidden="true">▍</span>}
            </div>
            {turn.callId && (
              <a className="muted" href={`#/calls/${turn.callId}`}>
                call {turn.callId.slice(0, 8)}
              </a>
            )}
          </li>
        ))}
      </ol>
      <ErrorBanner error={error} />
      <form className="composer" onSubmit={send}>
        <label htmlFor="chat-message" className="sr-only">
          Message
        </label>
        <textarea
          id="chat-message"
          rows={2}
          value={message}
          placeholder="Message the agent (Enter to send, Shift+Enter for a new line)"
          onChange={(e) => setMessage(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey) {
              e.preventDefault();
              (e.currentTarget.form as HTMLFormElement).requestSubmit();
            }
          }}
        />
        {streaming ? (
          <button type="button" onClick={() => abort.current?.abort()}>
            Stop
          </button>
        ) : (
          <button type="submit" className="primary">
            Send
          </button>
        )}
      </form>
    </section>
  );
}
