import { useState, type FormEvent } from "react";
import { ApiError, session } from "../api";
import { ErrorBanner, Field } from "../ui";

export default function SignIn() {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await session.signIn(email, password);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const fields = error instanceof ApiError ? error.fields : {};
  return (
    <main className="signin">
      <form onSubmit={submit} aria-labelledby="signin-title" className="card">
        <h1 id="signin-title">
          <img src="/console/mesh.svg" alt="" width={28} height={28} /> Sign in to Agent Mesh
        </h1>
        <Field label="Email" name="email" type="email" value={email} onChange={setEmail} required error={fields.email} />
        <Field label="Password" name="password" type="password" value={password} onChange={setPassword} required error={fields.password} />
        <ErrorBanner error={error && Object.keys(fields).length === 0 ? error : undefined} />
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
