import { useCallback, useState } from "react";
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
