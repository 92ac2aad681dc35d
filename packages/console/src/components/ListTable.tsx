import type { ComponentChildren } from "preact";

/**
 * A `table.list`: one header row with a `th scope="col"` per column, then the rows (the children)
 * in its body.
 */
export function ListTable({ testid, columns, children }: { testid?: string; columns: readonly ComponentChildren[]; children: ComponentChildren }) {
  return (
    <table data-testid={testid} class="list">
      <thead>
        <tr>
          {columns.map((c, i) => (
            <th key={i} scope="col">
              {c}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}
