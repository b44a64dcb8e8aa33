import { api } from "../api";
import { ErrorBanner, Page, Status, useLoad, when } from "../ui";

export default function CallDetail({ id }: { id: string }) {
  const call = useLoad(() => api.get(`/api/v1/calls/${id}`), [id]);
  const transcript = useLoad(() => api.get(`/api/v1/calls/${id}/transcript`), [id]);
  const c = call.data;
  return (
    <Page title={`Call ${id.slice(0, 8)}`}>
      <p>
        <a href="#/calls">← All calls</a>
      </p>
      <ErrorBanner error={call.error || transcript.error} />
      {c && (
        <dl className="card facts">
          <dt>Status</dt>
          <dd>
            <Status value={c.status} /> {c.reason}
          </dd>
          <dt>Agent</dt>
          <dd>
            <a href={`#/agents/${c.agent_id}`}>{c.agent_id}</a>
          </dd>
          <dt>Model</dt>
          <dd>
            {c.model || "—"} ({c.provider || "—"})
          </dd>
          <dt>Tokens</dt>
          <dd>
            {c.prompt_tokens ?? 0} in, {c.completion_tokens ?? 0} out
          </dd>
          <dt>Cost</dt>
          <dd>${Number(c.cost_usd ?? 0).toFixed(6)}</dd>
          <dt>Latency</dt>
          <dd>{c.duration_ms ?? 0} ms</dd>
          <dt>Started</dt>
          <dd>{when(c.started_at)}</dd>
          <dt>Trace</dt>
          <dd>{String(c.metadata?.trace_id ?? "—")}</dd>
        </dl>
      )}
      {c?.tool_calls?.length > 0 && (
        <div className="card">
          <h2>Tool calls</h2>
          <pre>{JSON.stringify(c.tool_calls, null, 2)}</pre>
        </div>
      )}
      <h2>Transcript</h2>
      <ol className="turns" data-testid="transcript">
        {(transcript.data?.entries ?? []).map((e: { role: string; content: string; timestamp?: string }, i: number) => (
          <li key={i} className={`turn ${e.role === "user" ? "user" : "assistant"}`}>
            <span className="who">{e.role}</span>
            <div className="content">{e.content}</div>
            <span className="muted">{when(e.timestamp)}</span>
          </li>
        ))}
      </ol>
    </Page>
  );
}
