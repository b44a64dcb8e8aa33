import { lazy, Suspense, useEffect, useState } from "react";
import { label, session } from "./api";
import SignIn from "./pages/SignIn";
import Agents from "./pages/Agents";
import AgentDetail from "./pages/AgentDetail";
import Workflows from "./pages/Workflows";
import WorkflowDetail from "./pages/WorkflowDetail";
import Execution from "./pages/Execution";
import Calls from "./pages/Calls";
import CallDetail from "./pages/CallDetail";
import Tools from "./pages/Tools";
import Audit from "./pages/Audit";
import Settings from "./pages/Settings";
import Prompts from "./pages/Prompts";
import Models from "./pages/Models";
import Governance from "./pages/Governance";
import Templates from "./pages/Templates";
import { go, useRoute, useSession } from "./ui";

// The charts library is the largest part: loaded with the overview only.
const Overview = lazy(() => import("./pages/Overview"));

const NAV: { path: string; title: string; scope: string }[] = [
  { path: "overview", title: "Overview", scope: "analytics:read" },
  { path: "agents", title: "Agents", scope: "agents:read" },
  { path: "workflows", title: "Workflows", scope: "workflows:read" },
  { path: "calls", title: "Calls", scope: "calls:read" },
  { path: "tools", title: "Tools", scope: "tools:read" },
  { path: "prompts", title: "Prompts", scope: "masterdata:read" },
  { path: "models", title: "Models", scope: "masterdata:read" },
  { path: "templates", title: "Templates", scope: "templates:read" },
  { path: "governance", title: "Governance", scope: "governance:read" },
  { path: "audit", title: "Audit", scope: "observability:read" },
];

export default function App() {
  const current = useSession();
  const route = useRoute();
  const [resuming, setResuming] = useState(true);

  useEffect(() => {
    session.resume().finally(() => setResuming(false));
  }, []);

  if (resuming) return <p className="loading" aria-busy="true">Loading…</p>;
  if (!current.me) return <SignIn />;

  const me = current.me;
  const [section, id, sub] = route;
  let page;
  if (section === "agents" && id) page = <AgentDetail id={id} />;
  else if (section === "agents") page = <Agents />;
  else if (section === "workflows" && id) page = <WorkflowDetail id={id} />;
  else if (section === "workflows") page = <Workflows />;
  else if (section === "executions" && id) page = <Execution id={id} />;
  else if (section === "calls" && id) page = <CallDetail id={id} />;
  else if (section === "calls") page = <Calls />;
  else if (section === "tools") page = <Tools />;
  else if (section === "audit") page = <Audit />;
  else if (section === "settings") page = <Settings />;
  else if (section === "prompts") page = <Prompts id={id} />;
  else if (section === "models") page = <Models />;
  else if (section === "governance") page = <Governance />;
  else if (section === "templates") page = <Templates id={id} />;
  else page = <Overview />;
  void sub;

  return (
    <div className="shell">
      <header className="topbar">
        <a className="brand" href="#/overview">
          <img src="/console/mesh.svg" alt="" width={24} height={24} /> <span className="brand-name">Agent Mesh</span>
        </a>
        <nav aria-label="Main">
          <ul>
            {[...NAV, ...(current.can("users:read") || current.can("apikeys:read") ? [{ path: "settings", title: "Settings", scope: "" }] : [])]
              .filter((item) => !item.scope || current.can(item.scope))
              .map((item) => (
              <li key={item.path}>
                <a href={`#/${item.path}`} aria-current={(section || "overview") === item.path ? "page" : undefined}>
                  {item.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who" data-testid="who">
          <span className="email" title={me.id}>{me.email}</span>
          <span className="role" data-testid="role" title={me.email}>{label(me.role, "ROLE_")}</span>
          <span className="tenant" data-testid="tenant" title="tenant">
            tenant {me.tenant_id.slice(0, 8)}
          </span>
          <button
            type="button"
            onClick={async () => {
              await session.signOut();
              go("");
            }}
          >
            Sign out
          </button>
        </div>
      </header>
      <main>
        <Suspense fallback={<p aria-busy="true">Loading…</p>}>{page}</Suspense>
      </main>
    </div>
  );
}
