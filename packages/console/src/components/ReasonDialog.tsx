/** A modal dialog that asks why (HALT, ABORT): a required reason and a confirm button. */
import type { ComponentChildren } from "preact";
import { useEffect, useId, useRef, useState } from "preact/hooks";

export interface ReasonDialogProps {
  open: boolean;
  testid: string;
  confirmTestid: string;
  title: string;
  confirmText: string;
  children?: ComponentChildren;
  onClose: () => void;
  /** Called with the reason; the dialog closes once it settles (its failure is reported by the caller). */
  onConfirm: (reason: string) => Promise<unknown>;
}

export function ReasonDialog(props: ReasonDialogProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const id = useId();

  useEffect(() => {
    const el = dialog.current;
    if (!el) return;
    if (props.open && !el.open) {
      setReason("");
      el.showModal();
    } else if (!props.open && el.open) el.close();
  }, [props.open]);

  const submit = async (event: Event) => {
    event.preventDefault();
    const text = reason.trim();
    if (text === "" || busy) return;
    setBusy(true);
    try {
      await props.onConfirm(text);
    } finally {
      setBusy(false);
      props.onClose();
    }
  };

  return (
    <dialog ref={dialog} data-testid={props.testid} aria-labelledby={`${id}-title`} onClose={props.onClose} class="reason-dialog">
      <form method="dialog" onSubmit={(e) => void submit(e)}>
        <h2 id={`${id}-title`}>{props.title}</h2>
        {props.children}
        <label for={`${id}-reason`}>Reason (recorded in the audit log)</label>
        <textarea
          id={`${id}-reason`}
          name="reason"
          required
          maxLength={1000}
          rows={3}
          value={reason}
          onInput={(e) => setReason((e.currentTarget as HTMLTextAreaElement).value)}
        />
        <div class="buttons">
          <button type="submit" class="danger" data-testid={props.confirmTestid} disabled={busy}>
            {busy ? "Working…" : props.confirmText}
          </button>
          <button type="button" onClick={props.onClose} disabled={busy}>
            Cancel
          </button>
        </div>
      </form>
    </dialog>
  );
}
