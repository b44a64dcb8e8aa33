import { useState, type FormEvent } from "react";
import { api, ApiError, session } from "../api";
import { ErrorBanner, Field, Page, useLoad, when } from "../ui";

/** Models of the master data, and the tenant's secrets — write only: a value is never shown. */
export default function Models() {
  return (
    <Page title="Models and secrets">
      <ModelList />
      {session.can("secrets:read") && <Secrets />}
    </Page>
  );
}

function ModelList() {
  const list = useLoad(() => api.get("/api/v1/master-data/models", { page_size: 100 }), []);
  const providers = useLoad(() => api.get("/api/v1/master-data/models/providers").catch(() => ({ items: [] })), []);
  const secrets = useLoad(() => (session.can("secrets:read") ? api.get("/api/v1/master-data/secrets", { page_size: 100 }) : Promise.resolve({ items: [] })), []);
  const empty = { name: "", provider: "", model_id: "", endpoint_url: "", secret_ref: "", input: "", output: "" };
  const [form, setForm] = useState(empty);
  const [error, setError] = useState<unknown>();
  const set = (key: keyof typeof empty) => (value: string) => setForm({ ...form, [key]: value });

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    const { input, output, ...rest } = form;
    const body: Record<string, unknown> = Object.fromEntries(Object.entries(rest).filter(([, v]) => v));
    if (input || output) body.pricing = { input_per_1m_tokens: Number(input || 0), output_per_1m_tokens: Number(output || 0) };
    try {
      await api.post("/api/v1/master-data/models", body);
      setForm(empty);
      list.reload();
    } catch (e) {
      setError(e);
    }
  }
  const fields = error instanceof ApiError ? error.fields : {};
  const placed = ["name", "provider", "model_id", "endpoint_url", "secret_ref"];
  const pricingError = Object.entries(fields).filter(([f]) => f.startsWith("pricing")).map(([f, d]) => `${f}: ${d}`).join("\n");
  const other = Object.keys(fields).some((f) => !placed.includes(f) && !f.startsWith("pricing"));
  return (
    <section className="card" aria-labelledby="models-title">
      <h2 id="models-title">Models</h2>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Models">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Provider</th>
            <th scope="col">Model id</th>
            <th scope="col">Price per 1M tokens (in / out)</th>
            <th scope="col">Secret</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((m: { id: string; name: string; provider: string; model_id: string; secret_ref?: string; pricing?: { input_per_1m_tokens?: number; output_per_1m_tokens?: number } }) => (
            <tr key={m.id}>
              <td>{m.name}</td>
              <td>{m.provider}</td>
              <td>
                <code>{m.model_id}</code>
              </td>
              <td>
                ${m.pricing?.input_per_1m_tokens ?? 0} / ${m.pricing?.output_per_1m_tokens ?? 0}
              </td>
              <td>{m.secret_ref || "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {session.can("masterdata:write") && (
        <form className="form" onSubmit={submit} aria-label="New model" noValidate>
          <h3>New model</h3>
          <Field label="Model name" name="name" value={form.name} onChange={set("name")} error={fields.name} />
          <Field label="Provider" name="provider" value={form.provider} onChange={set("provider")} error={fields.provider} list="providers" hint="openai, anthropic, openai_compatible, ..." />
          <datalist id="providers">
            {["openai", "anthropic", "openai_compatible", ...(providers.data?.items ?? []).map((p: { value?: string; name?: string }) => p.value ?? p.name ?? "")]
              .filter((v, i, all) => v && all.indexOf(v) === i)
              .map((p) => (
                <option key={p} value={p} />
              ))}
          </datalist>
          <Field label="Provider's model id" name="model_id" value={form.model_id} onChange={set("model_id")} error={fields.model_id} />
          <Field label="Endpoint URL" name="endpoint_url" value={form.endpoint_url} onChange={set("endpoint_url")} error={fields.endpoint_url} />
          <div className="field">
            <label htmlFor="model-secret">API key secret</label>
            <select id="model-secret" value={form.secret_ref} onChange={(e) => set("secret_ref")(e.target.value)} aria-invalid={fields.secret_ref ? true : undefined}>
              <option value="">none</option>
              {(secrets.data?.items ?? []).map((s: { id: string; name: string }) => (
                <option key={s.id} value={s.name}>
                  {s.name}
                </option>
              ))}
            </select>
            {fields.secret_ref && <small className="field-error" role="alert">{fields.secret_ref}</small>}
          </div>
          <Field label="Input price per 1M tokens (USD)" name="input" type="number" value={form.input} onChange={set("input")} error={pricingError || undefined} />
          <Field label="Output price per 1M tokens (USD)" name="output" type="number" value={form.output} onChange={set("output")} />
          <ErrorBanner error={error && (Object.keys(fields).length === 0 || other) ? error : undefined} />
          <button type="submit" className="primary">
            Add model
          </button>
        </form>
      )}
    </section>
  );
}

function Secrets() {
  const list = useLoad(() => api.get("/api/v1/master-data/secrets", { page_size: 100 }), []);
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [rotating, setRotating] = useState<{ id: string; name: string } | null>(null);
  const [newValue, setNewValue] = useState("");
  const [error, setError] = useState<unknown>();

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    try {
      await api.post("/api/v1/master-data/secrets", { name, value });
      setName("");
      setValue("");
      list.reload();
    } catch (e) {
      setError(e);
    }
  }

  async function rotate(event: FormEvent) {
    event.preventDefault();
    if (!rotating) return;
    setError(undefined);
    try {
      await api.put(`/api/v1/master-data/secrets/${rotating.id}?update_mask=value`, { value: newValue });
      setRotating(null);
      setNewValue("");
      list.reload();
    } catch (e) {
      setError(e);
    }
  }
  const fields = error instanceof ApiError ? error.fields : {};
  const canWrite = session.can("secrets:write");
  return (
    <section className="card" aria-labelledby="secrets-title">
      <h2 id="secrets-title">Secrets</h2>
      <p className="muted">Write only: a secret's value is never shown again, here or by the API.</p>
      <ErrorBanner error={list.error || (error && Object.keys(fields).length === 0 ? error : undefined)} />
      <table className="grid" aria-label="Secrets">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Hint</th>
            <th scope="col">Version</th>
            <th scope="col">Last rotated</th>
            <th scope="col"></th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((s: { id: string; name: string; value_hint?: string; version?: number; last_rotated_at?: string; created_at?: string }) => (
            <tr key={s.id}>
              <td>{s.name}</td>
              <td>
                <code>{s.value_hint || "—"}</code>
              </td>
              <td>{s.version ?? 1}</td>
              <td>{when(s.last_rotated_at || s.created_at)}</td>
              <td>
                {canWrite && (
                  <button type="button" onClick={() => setRotating({ id: s.id, name: s.name })}>
                    Rotate {s.name}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {rotating && (
        <form className="form" onSubmit={rotate} aria-label="Rotate secret" noValidate>
          <h3>Rotate {rotating.name}</h3>
          <Field label="New value" name="value" type="password" value={newValue} onChange={setNewValue} error={fields.value} />
          <div className="actions">
            <button type="submit" className="primary">Save new value</button>
            <button type="button" onClick={() => setRotating(null)}>Cancel</button>
          </div>
        </form>
      )}
      {canWrite && !rotating && (
        <form className="form" onSubmit={submit} aria-label="New secret" noValidate>
          <h3>New secret</h3>
          <Field label="Secret name" name="name" value={name} onChange={setName} error={fields.name} />
          <Field label="Secret value" name="value" type="password" value={value} onChange={setValue} error={fields.value} />
          <button type="submit" className="primary">
            Add secret
          </button>
        </form>
      )}
    </section>
  );
}
