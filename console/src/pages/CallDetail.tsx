import { useEffect, useState } from "react";
import { api, session } from "../api";
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
        </dl>
      )}
      {c?.tool_calls?.length > 0 && (
        <div className="card">
          <h2>Tool calls</h2>
          <pre>{JSON.stringify(c.tool_calls, null, 2)}</pre>
        </div>
      )}
      {session.can("observability:read") && <Trace callId={id} />}
      <h2>Transcript</h2>
      <ol className="turns" data-testid="transcript">
        {(transcript.data?.entries ?? []).map((e: { role: string; content: string; timestamp?: string; metadata?: Record<string, unknown> }, i: number) => (
          <li key={i} className={`turn ${e.role === "user" ? "user" : "assistant"}`}>
            <span className="who">{e.role}</span>
            <div className="content">{e.content}</div>
            {!e.content && e.metadata && Object.keys(e.metadata).length > 0 && <code className="pre">{JSON.stringify(e.metadata)}</code>}
            <span className="muted">{when(e.timestamp)}</span>
          </li>
        ))}
      </ol>
    </Page>
  );
}

type Span = { span_id: string; parent_span_id?: string; name: string; service: string; started_at: string; duration_ms: number; status?: string; status_message?: string };

/** The call's trace (spans tagged with its id), drawn as a waterfall in the order of the tree. */
function Trace({ callId }: { callId: string }) {
  // Spans are exported in batches: a call that just ended may have none yet; look again for a while.
  const [attempt, setAttempt] = useState(0);
  const trace = useLoad(async () => {
    const found = await api.get("/api/v1/observability/traces", { call_id: callId, page_size: 5 });
    const first = found.items?.[0];
    return first ? api.get(`/api/v1/observability/traces/${first.trace_id}`) : null;
  }, [callId, attempt]);
  useEffect(() => {
    if (trace.data === null && attempt < 10) {
      const timer = window.setTimeout(() => setAttempt((n) => n + 1), 2000);
      return () => window.clearTimeout(timer);
    }
  }, [trace.data, attempt]);
  const t = trace.data as { trace_id: string; duration_ms: number; started_at: string; spans: Span[] } | null | undefined;
  const rows: { span: Span; depth: number }[] = [];
  if (t) {
    const children = new Map<string, Span[]>();
    const ids = new Set(t.spans.map((s) => s.span_id));
    for (const span of t.spans) {
      const parent = span.parent_span_id && ids.has(span.parent_span_id) ? span.parent_span_id : "";
      children.set(parent, [...(children.get(parent) ?? []), span]);
    }
    const walk = (parent: string, depth: number) => {
      for (const span of (children.get(parent) ?? []).sort((a, b) => a.started_at.localeCompare(b.started_at))) {
        rows.push({ span, depth });
        walk(span.span_id, depth + 1);
      }
    };
    walk("", 0);
  }
  const start = t ? new Date(t.started_at).getTime() : 0;
  const total = Math.max(t?.duration_ms ?? 1, 1);
  return (
    <section className="card" aria-labelledby="trace-title">
      <h2 id="trace-title">Trace {t && <code className="muted">{t.trace_id}</code>}</h2>
      <ErrorBanner error={trace.error} />
      {t === null && <p className="muted">{attempt < 10 ? "Looking for the trace…" : "No trace found for this call (not sampled, or not indexed by its id)."}</p>}
      {t && (
        <table className="grid trace" aria-label="Spans" data-testid="trace">
          <thead>
            <tr>
              <th scope="col">Span</th>
              <th scope="col">Service</th>
              <th scope="col">Duration</th>
              <th scope="col" className="timeline-head">Timeline ({total.toFixed(1)} ms)</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(({ span, depth }) => {
              const offset = ((new Date(span.started_at).getTime() - start) / total) * 100;
              const width = Math.max((span.duration_ms / total) * 100, 0.5);
              return (
                <tr key={span.span_id} className={span.status === "SPAN_STATUS_ERROR" ? "span-error" : undefined}>
                  <td style={{ paddingLeft: `${0.7 + depth * 1.1}rem` }} title={span.status_message || undefined}>
                    {span.name}
                  </td>
                  <td>{span.service}</td>
                  <td>{span.duration_ms.toFixed(1)} ms</td>
                  <td className="timeline">
                    <span className="bar" style={{ marginLeft: `${Math.min(offset, 99.5)}%`, width: `${Math.min(width, 100 - Math.min(offset, 99.5))}%` }} />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
