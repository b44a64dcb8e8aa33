import { useEffect, useId, useState, type ReactNode } from "react";
import { ApiError, session } from "./api";

/** The hash route: #/agents/abc -> ["agents", "abc"]. */
export function useRoute(): string[] {
  const read = () => location.hash.replace(/^#\/?/, "").split("?")[0].split("/").filter(Boolean);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const onChange = () => setRoute(read());
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function go(path: string) {
  location.hash = `#/${path}`;
}

/** Re-renders when the session changes (sign in, sign out, refresh failure). */
export function useSession() {
  const [, setTick] = useState(0);
  useEffect(() => session.subscribe(() => setTick((n) => n + 1)), []);
  return session;
}

type FieldProps = {
  label: string;
  name: string;
  value: string;
  onChange: (value: string) => void;
  error?: string;
  type?: string;
  multiline?: boolean;
  required?: boolean;
  placeholder?: string;
  list?: string;
  hint?: string;
};

/** A labelled input whose API validation message is shown under it (aria-describedby). */
export function Field(props: FieldProps) {
  const id = useId();
  const errorId = `${id}-error`;
  const common = {
    id,
    name: props.name,
    value: props.value,
    required: props.required,
    placeholder: props.placeholder,
    "aria-invalid": props.error ? true : undefined,
    "aria-describedby": props.error ? errorId : undefined,
  };
  return (
    <div className={`field${props.error ? " invalid" : ""}`}>
      <label htmlFor={id}>{props.label}</label>
      {props.multiline ? (
        <textarea {...common} rows={4} onChange={(e) => props.onChange(e.target.value)} />
      ) : (
        <input {...common} type={props.type ?? "text"} list={props.list} onChange={(e) => props.onChange(e.target.value)} />
      )}
      {props.hint && !props.error && <small className="hint">{props.hint}</small>}
      {props.error && (
        <small id={errorId} className="field-error" role="alert" data-field={props.name}>
          {props.error}
        </small>
      )}
    </div>
  );
}

/** An API error that is not about one field: shown, never swallowed. */
export function ErrorBanner({ error }: { error: unknown }) {
  if (!error) return null;
  const message = error instanceof ApiError ? `${error.error}: ${error.message}` : String((error as Error).message ?? error);
  const correlation = error instanceof ApiError && error.correlationId ? ` (correlation id ${error.correlationId})` : "";
  return (
    <div className="banner error" role="alert" data-testid="api-error">
      {message}
      {correlation && <span className="muted">{correlation}</span>}
    </div>
  );
}

export function Status({ value }: { value: string }) {
  const text = value.replace(/^(AGENT|WORKFLOW|EXECUTION|STEP|CALL)_STATUS_/, "").toLowerCase().replace(/_/g, " ");
  return <span className={`status status-${text.replace(/ /g, "-")}`}>{text || "—"}</span>;
}

export function Page({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  useEffect(() => {
    document.title = `${title} · Agent Mesh`;
  }, [title]);
  return (
    <section className="page" aria-labelledby="page-title">
      <header className="page-header">
        <h1 id="page-title">{title}</h1>
        <div className="actions">{actions}</div>
      </header>
      {children}
    </section>
  );
}

export function when(value: unknown): string {
  if (!value) return "—";
  const date = new Date(String(value));
  return isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** Loads once (and again when `deps` change); `reload` to fetch again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): {
  data: T | undefined;
  error: unknown;
  reload: () => void;
  loading: boolean;
} {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<unknown>();
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setLoading(true);
    load()
      .then((value) => live && (setData(value), setError(undefined)))
      .catch((e) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  return { data, error, loading, reload: () => setTick((n) => n + 1) };
}
