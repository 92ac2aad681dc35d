/** The page's API errors, each with the server's own message; never swallowed. */
export function ErrorList({ errors, onDismiss }: { errors: [string, string][]; onDismiss: (source: string) => void }) {
  if (errors.length === 0) return null;
  return (
    <div class="errors" data-testid="error" role="alert">
      {errors.map(([source, message]) => (
        <p key={source}>
          <span>{message}</span>
          {/* The × is drawn by CSS: the list's text is the messages only. */}
          <button type="button" class="link dismiss" aria-label="Dismiss this error" title="Dismiss" onClick={() => onDismiss(source)} />
        </p>
      ))}
    </div>
  );
}
