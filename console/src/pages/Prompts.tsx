import { useEffect, useState, type FormEvent } from "react";
import { diffLines } from "diff";
import { api, ApiError, session } from "../api";
import { ErrorBanner, Field, Page, useLoad, when } from "../ui";

type Prompt = { id: string; name: string; description?: string; version: number; labels?: Record<string, number>; updated_at?: string };
type Version = { version: number; content: string; changelog?: string; created_at?: string; labels?: string[] };

const BASE = "/api/v1/master-data/prompts";

export default function Prompts({ id }: { id?: string }) {
  return id ? <PromptDetail id={id} /> : <PromptList />;
}

function PromptList() {
  const list = useLoad(() => api.get(BASE, { page_size: 100 }), []);
  const [creating, setCreating] = useState(false);
  const [form, setForm] = useState({ name: "", description: "", content: "" });
  const [error, setError] = useState<unknown>();

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    try {
      const prompt = await api.post(BASE, form);
      location.hash = `#/prompts/${prompt.id}`;
    } catch (e) {
      setError(e);
    }
  }
  const fields = error instanceof ApiError ? error.fields : {};
  return (
    <Page
      title="Prompts"
      actions={
        session.can("masterdata:write") && (
          <button type="button" className="primary" disabled={creating} onClick={() => setCreating(true)}>
            New prompt
          </button>
        )
      }
    >
      {creating && (
        <form className="card form" onSubmit={submit} aria-label="New prompt" noValidate>
          <h2>New prompt</h2>
          <Field label="Name" name="name" value={form.name} onChange={(v) => setForm({ ...form, name: v })} error={fields.name} />
          <Field label="Description" name="description" value={form.description} onChange={(v) => setForm({ ...form, description: v })} error={fields.description} />
          <Field label="Content" name="content" value={form.content} onChange={(v) => setForm({ ...form, content: v })} error={fields.content} multiline hint="{{variable}} placeholders are filled when rendered" />
          <ErrorBanner error={error && Object.keys(fields).length === 0 ? error : undefined} />
          <div className="actions">
            <button type="submit" className="primary">Create prompt</button>
            <button type="button" onClick={() => setCreating(false)}>Cancel</button>
          </div>
        </form>
      )}
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Prompts">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Version</th>
            <th scope="col">Labels</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((p: Prompt) => (
            <tr key={p.id}>
              <td>
                <a href={`#/prompts/${p.id}`}>{p.name}</a>
                {p.description && <div className="muted">{p.description}</div>}
              </td>
              <td>{p.version}</td>
              <td>{Object.entries(p.labels ?? {}).map(([l, v]) => `${l} → ${v}`).join(", ") || "—"}</td>
              <td>{when(p.updated_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}

function PromptDetail({ id }: { id: string }) {
  const prompt = useLoad<Prompt>(() => api.get(`${BASE}/${id}`), [id]);
  const versions = useLoad(() => api.get(`${BASE}/${id}/versions`, { page_size: 100 }), [id]);
  const items: Version[] = [...(versions.data?.items ?? [])].sort((a: Version, b: Version) => a.version - b.version);
  const [left, setLeft] = useState(0);
  const [right, setRight] = useState(0);
  const [content, setContent] = useState("");
  const [changelog, setChangelog] = useState("");
  const [labelName, setLabelName] = useState("production");
  const [labelVersion, setLabelVersion] = useState(0);
  const [error, setError] = useState<unknown>();
  const canWrite = session.can("masterdata:write");

  useEffect(() => {
    if (items.length && !right) {
      const last = items[items.length - 1];
      setRight(last.version);
      setLeft(items.length > 1 ? items[items.length - 2].version : last.version);
      setLabelVersion(last.version);
      setContent(last.content);
    }
  }, [items.length]); // eslint-disable-line react-hooks/exhaustive-deps

  async function newVersion(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    try {
      const v = await api.post(`${BASE}/${id}/versions`, { content, changelog });
      setChangelog("");
      setRight(v.version);
      versions.reload();
      prompt.reload();
    } catch (e) {
      setError(e);
    }
  }

  async function setLabel(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    try {
      await api.put(`${BASE}/${id}/labels/${encodeURIComponent(labelName)}`, { version: labelVersion });
      prompt.reload();
      versions.reload();
    } catch (e) {
      setError(e);
    }
  }

  const a = items.find((v) => v.version === left)?.content ?? "";
  const b = items.find((v) => v.version === right)?.content ?? "";
  const fields = error instanceof ApiError ? error.fields : {};
  const p = prompt.data;
  return (
    <Page title={p ? p.name : "Prompt"}>
      <p>
        <a href="#/prompts">← All prompts</a>
      </p>
      <ErrorBanner error={prompt.error || versions.error || (error && Object.keys(fields).length === 0 ? error : undefined)} />
      {p && (
        <p>
          version {p.version} · labels:{" "}
          <span data-testid="prompt-labels">{Object.entries(p.labels ?? {}).map(([l, v]) => `${l} → ${v}`).join(", ") || "none"}</span>
        </p>
      )}
      <section className="card" aria-labelledby="diff-title">
        <h2 id="diff-title">Compare versions</h2>
        <div className="toolbar">
          <label htmlFor="diff-left">From</label>
          <select id="diff-left" value={left} onChange={(e) => setLeft(Number(e.target.value))}>
            {items.map((v) => <option key={v.version} value={v.version}>v{v.version}</option>)}
          </select>
          <label htmlFor="diff-right">To</label>
          <select id="diff-right" value={right} onChange={(e) => setRight(Number(e.target.value))}>
            {items.map((v) => <option key={v.version} value={v.version}>v{v.version}</option>)}
          </select>
        </div>
        <pre className="diff" data-testid="diff">
          {diffLines(a, b).map((part, i) => (
            <span key={i} className={part.added ? "added" : part.removed ? "removed" : undefined}>
              {part.value
                .replace(/\n$/, "")
                .split("\n")
                .map((line) => `${part.added ? "+ " : part.removed ? "- " : "  "}${line}`)
                .join("\n") + "\n"}
            </span>
          ))}
        </pre>
      </section>
      <table className="grid" aria-label="Versions">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Changelog</th>
            <th scope="col">Labels</th>
            <th scope="col">Created</th>
          </tr>
        </thead>
        <tbody>
          {items.map((v) => (
            <tr key={v.version}>
              <td>v{v.version}</td>
              <td>{v.changelog || "—"}</td>
              <td>{(v.labels ?? []).join(", ") || "—"}</td>
              <td>{when(v.created_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {canWrite && (
        <div className="columns">
          <form className="card form" onSubmit={setLabel} aria-label="Move a label">
            <h2>Move a label</h2>
            <Field label="Label" name="label" value={labelName} onChange={setLabelName} error={fields.label} />
            <div className="field">
              <label htmlFor="label-version">To version</label>
              <select id="label-version" value={labelVersion} onChange={(e) => setLabelVersion(Number(e.target.value))}>
                {items.map((v) => <option key={v.version} value={v.version}>v{v.version}</option>)}
              </select>
            </div>
            <button type="submit">Set label</button>
          </form>
          <form className="card form" onSubmit={newVersion} aria-label="New version">
            <h2>New version</h2>
            <Field label="Version content" name="content" value={content} onChange={setContent} error={fields.content} multiline />
            <Field label="Changelog" name="changelog" value={changelog} onChange={setChangelog} error={fields.changelog} />
            <button type="submit" className="primary">Save version</button>
          </form>
        </div>
      )}
    </Page>
  );
}
