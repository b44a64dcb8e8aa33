import { useState, type FormEvent } from "react";
import { api, ApiError, session } from "../api";
import { ErrorBanner, Field, Page, Status, useLoad, when } from "../ui";

type Tool = { id: string; name: string; description?: string; type: string; status: string; updated_at?: string };
const BUILTINS = ["math", "echo", "json_transform", "current_time"];

export default function Tools() {
  const [search, setSearch] = useState("");
  const [query, setQuery] = useState("");
  const [creating, setCreating] = useState(false);
  const list = useLoad(() => api.get("/api/v1/tools", { search: query, page_size: 100 }), [query]);
  const tools: Tool[] = list.data?.items ?? [];
  return (
    <Page
      title="Tools"
      actions={
        session.can("tools:write") && (
          <button type="button" className="primary" onClick={() => setCreating(true)} disabled={creating}>
            New tool
          </button>
        )
      }
    >
      {creating && (
        <CreateTool
          onDone={() => {
            setCreating(false);
            list.reload();
          }}
        />
      )}
      <form
        role="search"
        className="toolbar"
        onSubmit={(e) => {
          e.preventDefault();
          setQuery(search);
        }}
      >
        <label htmlFor="tool-search">Search tools</label>
        <input id="tool-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} />
        <button type="submit">Search</button>
      </form>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Tools" aria-busy={list.loading}>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Type</th>
            <th scope="col">Status</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {tools.map((t) => (
            <tr key={t.id}>
              <td>
                {t.name}
                {t.description && <div className="muted">{t.description}</div>}
              </td>
              <td>{t.type.replace("TOOL_TYPE_", "").toLowerCase()}</td>
              <td>
                <Status value={t.status.replace("TOOL_STATUS_", "")} />
              </td>
              <td>{when(t.updated_at)}</td>
            </tr>
          ))}
          {!list.loading && tools.length === 0 && (
            <tr>
              <td colSpan={4} className="muted">
                No tools.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </Page>
  );
}

function CreateTool({ onDone }: { onDone: () => void }) {
  const types = useLoad(() => api.get("/api/v1/tools/types", { page_size: 50 }), []);
  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [type, setType] = useState("TOOL_TYPE_BUILTIN");
  const [builtin, setBuiltin] = useState("math");
  const [config, setConfig] = useState("{}");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const key = type.replace("TOOL_TYPE_", "").toLowerCase();

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(undefined);
    let specific: unknown;
    if (type === "TOOL_TYPE_BUILTIN") specific = { builtin_name: builtin };
    else {
      try {
        specific = JSON.parse(config || "{}");
      } catch (e) {
        setError(new ApiError(400, { error: "INVALID_JSON", message: (e as Error).message, details: { field_violations: [{ field: key, description: `not JSON: ${(e as Error).message}` }] } }));
        return;
      }
    }
    setBusy(true);
    try {
      await api.post("/api/v1/tools", { name, description, type, status: "TOOL_STATUS_ACTIVE", [key]: specific });
      onDone();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const configErrors = Object.entries(fields).filter(([f]) => f === key || f.startsWith(`${key}.`)).map(([f, d]) => `${f}: ${d}`).join("\n");
  const other = Object.keys(fields).some((f) => !["name", "description", "type"].includes(f) && !(f === key || f.startsWith(`${key}.`)));
  return (
    <form className="card form" onSubmit={submit} aria-label="New tool" noValidate>
      <h2>New tool</h2>
      <Field label="Name" name="name" value={name} onChange={setName} error={fields.name} required />
      <Field label="Description" name="description" value={description} onChange={setDescription} error={fields.description} />
      <div className="field">
        <label htmlFor="tool-type">Type</label>
        <select id="tool-type" value={type} onChange={(e) => setType(e.target.value)}>
          {(types.data?.items ?? [{ type: "TOOL_TYPE_BUILTIN", name: "builtin" }]).map((t: { type: string; name: string }) => (
            <option key={t.type} value={t.type}>
              {t.name}
            </option>
          ))}
        </select>
      </div>
      {type === "TOOL_TYPE_BUILTIN" ? (
        <div className="field">
          <label htmlFor="tool-builtin">Built-in function</label>
          <select id="tool-builtin" value={builtin} onChange={(e) => setBuiltin(e.target.value)}>
            {BUILTINS.map((b) => (
              <option key={b}>{b}</option>
            ))}
          </select>
          {configErrors && <small className="field-error" role="alert">{configErrors}</small>}
        </div>
      ) : (
        <Field label={`Configuration of ${key} (JSON)`} name={key} value={config} onChange={setConfig} error={configErrors || undefined} multiline />
      )}
      <ErrorBanner error={error && (Object.keys(fields).length === 0 || other) ? error : undefined} />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Create tool
        </button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}
