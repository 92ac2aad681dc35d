/**
 * The game-day console: log in with an API token (the session lives in an HttpOnly cookie), then
 * the pages of the hash routes, each under the header with HALT.
 */
import { render } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { loadSession, logout, messageOf, setCsrf, setUnauthenticatedHandler } from "./api.js";
import type { Session } from "./api.js";
import { ErrorList } from "./components/ErrorList.js";
import { Header } from "./components/Header.js";
import { ErrorContext, useErrorList, useRoute } from "./hooks.js";
import { AuditPage } from "./pages/Audit.js";
import { FleetPage, HostPage } from "./pages/Fleet.js";
import { LoginPage } from "./pages/Login.js";
import { RunPage } from "./pages/Run.js";
import { ReportPage } from "./pages/ReportPage.js";
import { RunsPage } from "./pages/Runs.js";
import { SchedulesPage } from "./pages/Schedules.js";
import { SpofPage } from "./pages/Spof.js";
import "./styles/base.css";
import "./styles/app.css";

function Page({ route }: { route: string[] }) {
  const [section, id, sub] = route;
  switch (section) {
    case undefined:
    case "fleet":
      return id ? <HostPage key={id} agentId={id} /> : <FleetPage />;
    case "runs":
      if (!id) return <RunsPage />;
      return sub === "report" ? <ReportPage key={id} runId={id} /> : <RunPage key={id} runId={id} />;
    case "schedules":
      return <SchedulesPage />;
    case "spof":
      return <SpofPage />;
    case "audit":
      return <AuditPage />;
    default:
      return (
        <main>
          <h1>Not found</h1>
          <p>
            There is no page <code>#/{route.join("/")}</code>. Go to the <a href="#/fleet">fleet</a>.
          </p>
        </main>
      );
  }
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [ended, setEnded] = useState<string | null>(null);
  const [startError, setStartError] = useState<string | null>(null);
  const route = useRoute();
  const { errors, sink, clearAll, dismiss } = useErrorList();
  const routeKey = route.join("/");

  useEffect(() => {
    setUnauthenticatedHandler((message) => {
      setCsrf(null);
      setEnded(`Your session ended: ${message}`);
      setSession(null);
    });
    loadSession().then(setSession, (err: unknown) => setStartError(messageOf(err)));
    return () => setUnauthenticatedHandler(null);
  }, []);

  // A page's errors are its own: they go when another page is shown.
  useEffect(() => clearAll(), [routeKey, clearAll]);

  const onLogout = useCallback(() => {
    logout().then(
      () => setSession(null),
      (err: unknown) => sink.report("logout", err),
    );
  }, [sink]);

  if (session === undefined) {
    return startError ? (
      <main>
        <div class="errors" data-testid="error" role="alert">
          <p>{startError}</p>
        </div>
        <button type="button" onClick={() => location.reload()}>
          Try again
        </button>
      </main>
    ) : (
      <main aria-busy="true">
        <p>Loading…</p>
      </main>
    );
  }
  if (session === null) {
    return (
      <LoginPage
        notice={ended}
        onLogin={(s) => {
          setEnded(null);
          clearAll();
          setSession(s);
        }}
      />
    );
  }
  return (
    <ErrorContext.Provider value={sink}>
      <Header session={session} section={route[0] ?? "fleet"} onLogout={onLogout} />
      <ErrorList errors={errors} onDismiss={dismiss} />
      <Page route={route} />
    </ErrorContext.Provider>
  );
}

render(<App />, document.getElementById("app")!);
