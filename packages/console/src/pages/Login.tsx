/** The login form: an API token in exchange for a session cookie. */
import { useState } from "preact/hooks";
import { login, messageOf } from "../api.js";
import type { Session } from "../api.js";

export function LoginPage({ notice, onLogin }: { notice: string | null; onLogin: (session: Session) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const session = await login(token.trim());
      setToken("");
      onLogin(session);
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="login">
      <h1>firedrill</h1>
      {notice && <p class="notice">{notice}</p>}
      <form data-testid="login" onSubmit={(e) => void submit(e)}>
        <label for="login-token">API token</label>
        <input id="login-token" name="token" type="password" autocomplete="current-password" required value={token} onInput={(e) => setToken((e.currentTarget as HTMLInputElement).value)} />
        <button type="submit" disabled={busy}>
          Log in
        </button>
        {error && (
          <div class="errors" data-testid="error" role="alert">
            <p>{error}</p>
          </div>
        )}
      </form>
      <p class="hint">
        Use a token from <code>firedrill token create</code> (or the admin token the server wrote at its first start). The console keeps a session cookie for 12 hours of
        inactivity; the token itself is not stored in the browser.
      </p>
    </main>
  );
}
