import { useState, type FormEvent } from "react";
import { api, ApiError, label, session } from "../api";
import { ErrorBanner, Field, Page, useLoad, when } from "../ui";

/** Users and roles, API keys (a new key is shown once) and webhooks, each offered only with its
 * scope. */
export default function Settings() {
  return (
    <Page title="Settings">
      {session.can("users:read") && <Users />}
      {session.can("apikeys:read") && <ApiKeys />}
      {session.can("integration:read") && <Webhooks />}
    </Page>
  );
}

const ROLES = ["ROLE_VIEWER", "ROLE_USER", "ROLE_DEVELOPER", "ROLE_ADMIN"];

function Users() {
  const list = useLoad(() => api.get("/api/v1/auth/users", { page_size: 100 }), []);
  const roles = useLoad(() => api.get("/api/v1/auth/roles"), []);
  const [form, setForm] = useState({ email: "", password: "", role: "ROLE_VIEWER" });
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.post("/api/v1/auth/users", form);
      setForm({ email: "", password: "", role: "ROLE_VIEWER" });
      list.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  const fields = error instanceof ApiError ? error.fields : {};
  return (
    <section className="card" aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <ErrorBanner error={list.error} />
      <table className="grid" aria-label="Users">
        <thead>
          <tr>
            <th scope="col">E-mail</th>
            <th scope="col">Role</th>
            <th scope="col">Active</th>
            <th scope="col">Last sign-in</th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((u: { id: string; email: string; role: string; active?: boolean; last_login_at?: string }) => (
            <tr key={u.id}>
              <td>{u.email}</td>
              <td>{label(u.role, "ROLE_")}</td>
              <td>{u.active === false ? "no" : "yes"}</td>
              <td>{when(u.last_login_at)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {session.can("users:write") && (
        <form className="form" onSubmit={submit} aria-label="New user" noValidate>
          <h3>New user</h3>
          <Field label="User e-mail" name="email" type="email" value={form.email} onChange={(v) => setForm({ ...form, email: v })} error={fields.email} />
          <Field label="Initial password" name="password" type="password" value={form.password} onChange={(v) => setForm({ ...form, password: v })} error={fields.password} />
          <div className="field">
            <label htmlFor="user-role">Role</label>
            <select id="user-role" value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value })}>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {label(r, "ROLE_")}
                </option>
              ))}
            </select>
            <small className="hint">
              {(roles.data?.items ?? []).find((r: { role: string }) => r.role === form.role)?.description}
            </small>
          </div>
          <ErrorBanner error={error && Object.keys(fields).length === 0 ? error : undefined} />
          <button type="submit" className="primary" disabled={busy}>
            Add user
          </button>
        </form>
      )}
    </section>
  );
}

function ApiKeys() {
  const list = useLoad(() => api.get("/api/v1/auth/api-keys", { page_size: 100 }), []);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState("agents:read");
  const [created, setCreated] = useState<{ name: string; key: string } | null>(null);
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const key = await api.post("/api/v1/auth/api-keys", { name, scopes: scopes.split(/[\s,]+/).filter(Boolean) });
      setCreated({ name: key.name, key: key.key });
      setName("");
      list.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  async function revoke(id: string) {
    setError(undefined);
    try {
      await api.del(`/api/v1/auth/api-keys/${id}`);
      list.reload();
    } catch (e) {
      setError(e);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const scopeErrors = Object.entries(fields).filter(([f]) => f.startsWith("scopes")).map(([f, d]) => `${f}: ${d}`).join("\n");
  return (
    <section className="card" aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <ErrorBanner error={list.error || (error && Object.keys(fields).length === 0 ? error : undefined)} />
      {created && (
        <div className="banner" role="status" data-testid="new-key">
          The key <strong>{created.name}</strong>, shown this once — copy it now:
          <pre>{created.key}</pre>
          <button type="button" onClick={() => setCreated(null)}>
            I have copied it
          </button>
        </div>
      )}
      <table className="grid" aria-label="API keys">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Prefix</th>
            <th scope="col">Scopes</th>
            <th scope="col">Last used</th>
            <th scope="col"></th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((k: { id: string; name: string; prefix: string; scopes?: string[]; last_used_at?: string; revoked_at?: string }) => (
            <tr key={k.id}>
              <td>{k.name}</td>
              <td>
                <code>{k.prefix}…</code>
              </td>
              <td>{(k.scopes ?? []).join(" ")}</td>
              <td>{k.revoked_at ? `revoked ${when(k.revoked_at)}` : when(k.last_used_at)}</td>
              <td>
                {!k.revoked_at && session.can("apikeys:delete") && (
                  <button type="button" className="danger" onClick={() => confirm(`Revoke ${k.name}?`) && revoke(k.id)}>
                    Revoke {k.name}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {session.can("apikeys:write") && (
        <form className="form" onSubmit={submit} aria-label="New API key" noValidate>
          <h3>New API key</h3>
          <Field label="Key name" name="name" value={name} onChange={setName} error={fields.name} />
          <Field label="Scopes (space-separated)" name="scopes" value={scopes} onChange={setScopes} error={scopeErrors || undefined} />
          <button type="submit" className="primary" disabled={busy}>
            Create key
          </button>
        </form>
      )}
    </section>
  );
}

type Webhook = { id: string; name: string; url: string; events?: string[]; active?: boolean; secret_hint?: string };

/** The platform's event webhooks (docs/webhooks.md): list, add (signing secret generated and
 * never shown), delete, and each one's recent deliveries. */
function Webhooks() {
  const list = useLoad(() => api.get("/api/v1/integration/webhooks", { page_size: 100 }), []);
  const [form, setForm] = useState({ name: "", url: "", events: "" });
  const [shown, setShown] = useState<string | null>(null);
  const deliveries = useLoad(
    () => (shown ? api.get(`/api/v1/integration/webhooks/${shown}/deliveries`, { page_size: 20 }) : Promise.resolve(null)),
    [shown],
  );
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api.post("/api/v1/integration/webhook", {
        name: form.name,
        url: form.url,
        events: form.events.split(/[\s,]+/).filter(Boolean),
      });
      setForm({ name: "", url: "", events: "" });
      list.reload();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  async function remove(id: string) {
    setError(undefined);
    try {
      await api.del(`/api/v1/integration/webhooks/${id}`);
      if (shown === id) setShown(null);
      list.reload();
    } catch (e) {
      setError(e);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  const eventErrors = Object.entries(fields).filter(([f]) => f.startsWith("events")).map(([f, d]) => `${f}: ${d}`).join("\n");
  return (
    <section className="card" aria-labelledby="webhooks-title">
      <h2 id="webhooks-title">Webhooks</h2>
      <ErrorBanner error={list.error || (error && Object.keys(fields).length === 0 ? error : undefined)} />
      <table className="grid" aria-label="Webhooks">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">URL</th>
            <th scope="col">Events</th>
            <th scope="col">Active</th>
            <th scope="col">Secret</th>
            <th scope="col"></th>
          </tr>
        </thead>
        <tbody>
          {(list.data?.items ?? []).map((w: Webhook) => (
            <tr key={w.id}>
              <td>{w.name}</td>
              <td>
                <code>{w.url}</code>
              </td>
              <td>{(w.events ?? []).join(" ") || "every event"}</td>
              <td>{w.active === false ? "no" : "yes"}</td>
              <td>
                <code>{w.secret_hint}</code>
              </td>
              <td>
                <button type="button" onClick={() => setShown(shown === w.id ? null : w.id)}>
                  {shown === w.id ? "Hide" : "Deliveries of"} {w.name}
                </button>{" "}
                {session.can("integration:write") && (
                  <button type="button" className="danger" onClick={() => confirm(`Delete ${w.name}?`) && remove(w.id)}>
                    Delete {w.name}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {shown && (
        <table className="grid" aria-label="Deliveries">
          <thead>
            <tr>
              <th scope="col">Event</th>
              <th scope="col">Status</th>
              <th scope="col">Attempts</th>
              <th scope="col">HTTP</th>
              <th scope="col">When</th>
            </tr>
          </thead>
          <tbody>
            {(deliveries.data?.items ?? []).map(
              (d: { id: string; event?: string; status?: string; attempts?: number; status_code?: number; created_at?: string }) => (
                <tr key={d.id}>
                  <td>{d.event}</td>
                  <td>{d.status}</td>
                  <td>{d.attempts}</td>
                  <td>{d.status_code || ""}</td>
                  <td>{when(d.created_at)}</td>
                </tr>
              ),
            )}
          </tbody>
        </table>
      )}
      {session.can("integration:write") && (
        <form className="form" onSubmit={submit} aria-label="New webhook" noValidate>
          <h3>New webhook</h3>
          <Field label="Webhook name" name="webhook-name" value={form.name} onChange={(v) => setForm({ ...form, name: v })} error={fields.name} />
          <Field label="URL" name="webhook-url" value={form.url} onChange={(v) => setForm({ ...form, url: v })} error={fields.url} />
          <Field label="Events (space-separated; empty: every event)" name="webhook-events" value={form.events} onChange={(v) => setForm({ ...form, events: v })} error={eventErrors || undefined} />
          <button type="submit" className="primary" disabled={busy}>
            Add webhook
          </button>
        </form>
      )}
    </section>
  );
}
