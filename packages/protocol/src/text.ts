/** Wording shared by messages of every package. */

/**
 * A count with its noun: `1 host`, `2 hosts`, `0 hosts`; `many` for irregular plurals
 * (`plural(n, "process", "processes")`).
 */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
