/** Where a stream keeps its resume token, so a page reload continues where it was. */
export interface ResumeStore {
  get(key: string): string | null;
  set(key: string, value: string): void;
  delete(key: string): void;
}

/** The browser's sessionStorage (per tab, cleared with it), or undefined outside a browser. */
export function sessionResumeStore(prefix = "tidings:"): ResumeStore | undefined {
  const storage = (globalThis as { sessionStorage?: Storage }).sessionStorage;
  if (!storage) return undefined;
  return {
    get: (key) => storage.getItem(prefix + key),
    set: (key, value) => storage.setItem(prefix + key, value),
    delete: (key) => storage.removeItem(prefix + key),
  };
}
