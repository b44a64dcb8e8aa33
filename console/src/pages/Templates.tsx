import { useState, type FormEvent } from "react";
import { api, ApiError, session } from "../api";
import { ErrorBanner, Field, Page, useLoad, when } from "../ui";

type Parameter = { name: string; description?: string; type?: string; required?: boolean; default_value?: unknown };
type Template = { id: string; name: string; description?: string; kind: string; version?: number; parameters?: Parameter[]; updated_at?: string };

const BASE = "/api/v1/templates";
const kind = (k: string) => k.replace("TEMPLATE_KIND_", "").toLowerCase();

export default function Templates({ id }: { id?: string }) {
  return id ? <TemplateDetail id={id} /> : <TemplateList />;
}

function TemplateList() {
  const list = useLoad(() => api.get(BASE, { page_size: 100 }), []);
  return (
    <Page title="Templates">
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Templates">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Kind</th>
            <th scope="col">Version</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((t: Template) => (
            <tr key={t.id}>
              <td>
                <a href={`#/templates/${t.id}`}>{t.name}</a>
                {t.description && <div className="muted">{t.description}</div>}
              </td>
              <td>{kind(t.kind)}</td>
              <td>{t.version ?? 1}</td>
              <td>{when(t.updated_at)}</td>
            </tr>
          ))}
          {!list.loading && !(list.data?.items ?? []).length && (
            <tr>
              <td colSpan={4} className="muted">No templates.</td>
            </tr>
          )}
        </tbody>
      </table>
    </Page>
  );
}

/** A parameter's text as its type: numbers, booleans, objects and arrays are parsed as JSON. */
function typed(value: string, type?: string): unknown {
  if (!type || type === "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

function TemplateDetail({ id }: { id: string }) {
  const template = useLoad<Template>(() => api.get(`${BASE}/${id}`), [id]);
  const [values, setValues] = useState<Record<string, string>>({});
  const [preview, setPreview] = useState<{ result?: unknown; missing_parameters?: string[] } | null>(null);
  const [made, setMade] = useState<{ resource_kind: string; resource_id: string } | null>(null);
  const [error, setError] = useState<unknown>();
  const t = template.data;

  function parameters() {
    const out: Record<string, unknown> = {};
    for (const p of t?.parameters ?? []) if (values[p.name] !== undefined && values[p.name] !== "") out[p.name] = typed(values[p.name], p.type);
    return out;
  }

  async function doPreview(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    setMade(null);
    try {
      setPreview(await api.get(`${BASE}/${id}/preview`, { parameters: JSON.stringify(parameters()) }));
    } catch (e) {
      setError(e);
    }
  }

  async function instantiate() {
    setError(undefined);
    try {
      setMade(await api.post(`${BASE}/${id}/instantiate`, { parameters: parameters(), create: true }));
    } catch (e) {
      setError(e);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const madeLink = made && (made.resource_kind === "TEMPLATE_KIND_AGENT" ? `#/agents/${made.resource_id}` : made.resource_kind === "TEMPLATE_KIND_WORKFLOW" ? `#/workflows/${made.resource_id}` : "");
  const kindScope = t ? `${kind(t.kind)}s:write` : "";
  return (
    <Page title={t ? t.name : "Template"}>
      <p>
        <a href="#/templates">← All templates</a>
      </p>
      <ErrorBanner error={template.error || (error && !Object.keys(fields).some((f) => f.startsWith("parameters.")) ? error : undefined)} />
      {t && (
        <>
          <p>
            a template of {kind(t.kind)} · version {t.version} {t.description && `· ${t.description}`}
          </p>
          <form className="card form" onSubmit={doPreview} aria-label="Template parameters" noValidate>
            <h2>Parameters</h2>
            {(t.parameters ?? []).map((p) => (
              <Field
                key={p.name}
                label={`${p.name}${p.required ? " (required)" : ""}`}
                name={p.name}
                value={values[p.name] ?? ""}
                onChange={(v) => setValues({ ...values, [p.name]: v })}
                placeholder={p.default_value !== undefined && p.default_value !== null ? `default: ${JSON.stringify(p.default_value)}` : undefined}
                hint={[p.type ?? "string", p.description].filter(Boolean).join(" — ")}
                error={fields[`parameters.${p.name}`]}
              />
            ))}
            <div className="actions">
              <button type="submit">Preview</button>
              {session.can("templates:execute") && session.can(kindScope) && (
                <button type="button" className="primary" onClick={instantiate}>
                  Create the {kind(t.kind)}
                </button>
              )}
            </div>
          </form>
          {preview && (
            <div className="card">
              <h2>Preview</h2>
              {!!preview.missing_parameters?.length && <p className="muted">Missing: {preview.missing_parameters.join(", ")}</p>}
              <pre data-testid="template-preview">{JSON.stringify(preview.result, null, 2)}</pre>
            </div>
          )}
          {made && (
            <div className="banner" role="status" data-testid="template-made">
              Created {kind(made.resource_kind)} {madeLink ? <a href={madeLink}>{made.resource_id}</a> : made.resource_id}
            </div>
          )}
        </>
      )}
    </Page>
  );
}
