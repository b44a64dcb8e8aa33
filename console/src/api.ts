// The console's only door to the mesh: the public REST API (/api/v1) and the live WebSockets
// (/ws), exactly as a script would use them. Nothing private.
//
// The session: the access token (15 minutes) lives in memory only; the refresh token is kept in
// sessionStorage, so a reload of the tab keeps you signed in and closing the tab forgets it.
// A 401 refreshes once (refresh tokens are single use: the new pair replaces the old at once)
// and retries; a failed refresh signs out.

export type Me = {
  id: string;
  tenant_id: string;
  email: string;
  full_name?: string;
  role: string;
  scopes: string[];
};

export type FieldErrors = Record<string, string>;

export class ApiError extends Error {
  status: number;
  error: string;
  details: Record<string, unknown>;
  correlationId: string;
  fields: FieldErrors;

  constructor(status: number, body: Record<string, unknown>) {
    super(String(body.message ?? `HTTP ${status}`));
    this.status = status;
    this.error = String(body.error ?? "UNKNOWN");
    this.details = (body.details as Record<string, unknown>) ?? {};
    this.correlationId = String(body.correlation_id ?? "");
    this.fields = {};
    const violations = (this.details.field_violations as { field: string; description: string }[]) ?? [];
    for (const v of violations) {
      this.fields[v.field] = this.fields[v.field] ? `${this.fields[v.field]}; ${v.description}` : v.description;
    }
  }
}

const REFRESH_KEY = "agentmesh.console.refresh";

type Listener = () => void;

class Session {
  access: string | null = null;
  me: Me | null = null;
  private listeners = new Set<Listener>();
  private refreshing: Promise<boolean> | null = null;

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit() {
    for (const fn of this.listeners) fn();
  }

  /** What the signed-in user may do: `*`, `resource:*` or the scope itself. */
  can(scope: string): boolean {
    const scopes = this.me?.scopes ?? [];
    const [resource] = scope.split(":");
    return scopes.includes("*") || scopes.includes(`${resource}:*`) || scopes.includes(scope);
  }

  async signIn(email: string, password: string): Promise<void> {
    const tokens = await request("POST", "/api/v1/auth/login", { email, password }, { auth: false });
    await this.adopt(tokens);
  }

  private async adopt(tokens: { access_token: string; refresh_token: string }) {
    this.access = tokens.access_token;
    sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
    this.me = await request("GET", "/api/v1/auth/me");
    this.emit();
  }

  /** On load: a refresh token kept by this tab signs in again without the password. */
  async resume(): Promise<boolean> {
    if (!sessionStorage.getItem(REFRESH_KEY)) return false;
    const ok = await this.refresh();
    if (ok) {
      try {
        this.me = await request("GET", "/api/v1/auth/me");
      } catch {
        this.forget();
        return false;
      }
      this.emit();
    }
    return ok;
  }

  refresh(): Promise<boolean> {
    if (!this.refreshing) {
      this.refreshing = (async () => {
        const token = sessionStorage.getItem(REFRESH_KEY);
        if (!token) return false;
        try {
          const tokens = await request("POST", "/api/v1/auth/refresh", { refresh_token: token }, { auth: false });
          this.access = tokens.access_token;
          sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
          return true;
        } catch {
          this.forget();
          return false;
        }
      })().finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async signOut(): Promise<void> {
    const token = sessionStorage.getItem(REFRESH_KEY);
    if (token) {
      try {
        await request("POST", "/api/v1/auth/logout", { refresh_token: token });
      } catch {
        // Signed out locally all the same.
      }
    }
    this.forget();
  }

  forget() {
    this.access = null;
    this.me = null;
    sessionStorage.removeItem(REFRESH_KEY);
    this.emit();
  }
}

export const session = new Session();

type Options = { auth?: boolean; signal?: AbortSignal; retried?: boolean };

async function send(method: string, path: string, body: unknown, options: Options): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (options.auth !== false && session.access) headers.Authorization = `Bearer ${session.access}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: options.signal,
  });
  if (response.status === 401 && options.auth !== false && !options.retried && session.access) {
    if (await session.refresh()) return send(method, path, body, { ...options, retried: true });
  }
  return response;
}

async function failure(response: Response): Promise<ApiError> {
  let body: Record<string, unknown> = {};
  try {
    body = await response.json();
  } catch {
    body = { error: "HTTP_ERROR", message: `${response.status} ${response.statusText}` };
  }
  return new ApiError(response.status, body);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function request(method: string, path: string, body?: unknown, options: Options = {}): Promise<any> {
  const response = await send(method, path, body, options);
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export const api = {
  get: (path: string, query?: Record<string, string | number | undefined>) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== "") params.set(k, String(v));
    const qs = params.toString();
    return request("GET", qs ? `${path}?${qs}` : path);
  },
  post: (path: string, body: unknown = {}) => request("POST", path, body),
  put: (path: string, body: unknown) => request("PUT", path, body),
  del: (path: string) => request("DELETE", path),
};

/** POSTs and reads the answer's Server-Sent Events (`data:` lines of JSON) as they arrive. */
export async function streamEvents(
  path: string,
  body: unknown,
  onEvent: (event: Record<string, unknown>) => void,
  signal?: AbortSignal,
): Promise<void> {
  const response = await send("POST", path, body, { signal });
  if (!response.ok || !response.body) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data) onEvent(JSON.parse(data));
    }
  }
}

/** Opens a live WebSocket (/ws/...) with a one-use ticket (docs/live-events.md). */
export async function openSocket(path: string): Promise<WebSocket> {
  const { ticket } = await api.post("/api/v1/live/tickets", {});
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return new WebSocket(`${scheme}://${location.host}${path}?ticket=${encodeURIComponent(ticket)}`);
}

/** The enum's name without its prefix: AGENT_STATUS_DEPLOYED -> deployed. */
export function label(value: unknown, prefix: string): string {
  const text = String(value ?? "");
  return (text.startsWith(prefix) ? text.slice(prefix.length) : text).toLowerCase().replace(/_/g, " ");
}
