import { FormEvent, useCallback, useState } from "react";
import { ApiError } from "./client";

/**
 * Field errors of a form from the API's 400s (`error.details.field`). An error
 * whose field the form shows (`has(field)`) goes to that field; any other goes
 * to the form's general message, with the field named.
 */
export function useFieldErrors() {
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [general, setGeneral] = useState<string | null>(null);

  const clear = useCallback(() => {
    setErrors({});
    setGeneral(null);
  }, []);

  /** known: the field paths the form renders; returns nothing */
  const fromError = useCallback((e: unknown, known: (field: string) => boolean) => {
    if (e instanceof ApiError) {
      const f = e.field;
      if (f && known(f)) {
        setErrors({ [f]: e.message });
        setGeneral(null);
        return;
      }
      setErrors({});
      const msg = e.status === 403 ? `Not allowed: ${e.message}` : e.message;
      setGeneral(f ? `${f}: ${msg}` : msg);
      return;
    }
    setErrors({});
    setGeneral(String(e));
  }, []);

  /** the error of a field, or of one below it (`config` shows `config.x`) */
  const at = useCallback(
    (field: string) => {
      if (errors[field]) return errors[field];
      for (const k of Object.keys(errors)) {
        if (k.startsWith(field + ".") || k.startsWith(field + "[")) return errors[k];
      }
      return undefined;
    },
    [errors],
  );

  return { errors, general, at, fromError, clear, setGeneral };
}

/** The field path's root for a matcher: `capacity[0].tokens` -> `capacity` */
export function rootOf(field: string): string {
  const m = /^[^.[]+/.exec(field);
  return m ? m[0] : field;
}

/** A matcher of the fields a form shows, each with the fields below it */
export function fieldsOf(...names: string[]): (field: string) => boolean {
  return (f) => names.some((k) => f === k || f.startsWith(k + ".") || f.startsWith(k + "["));
}

/**
 * A form's submit: clears its errors, is busy while `action` runs, and puts
 * an error that `action` throws on its field (`known`) or in the general
 * message, unless `onError` took it (returned true). `action` checks what
 * the form checks itself and returns early when that fails.
 */
export function useSubmit(
  action: () => Promise<unknown>,
  known: (field: string) => boolean,
  onError?: (e: unknown) => boolean,
) {
  const errs = useFieldErrors();
  const [busy, setBusy] = useState(false);
  const submit = async (e?: FormEvent) => {
    e?.preventDefault();
    errs.clear();
    setBusy(true);
    try {
      await action();
    } catch (err) {
      if (!onError?.(err)) errs.fromError(err, known);
    } finally {
      setBusy(false);
    }
  };
  return { errs, busy, submit };
}
