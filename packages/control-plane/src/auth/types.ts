/** Identity and access: roles, permissions, and who is calling. */

/** The roles a principal can hold. */
export const ROLES = ["viewer", "operator", "admin", "alertmanager"] as const;
/** A role. */
export type Role = (typeof ROLES)[number];

/**
 * What a route requires. Every HTTP route declares one (`config: { permission }`); a route without
 * one is refused at registration.
 * - `public`: no credentials (only `/healthz`, the agent install routes `/install/…`, whose
 *   secret is the join token, not the script or the tarball, and the console's page, files and
 *   login, whose secret is the API token);
 * - `read`: agents, faults, runs, reports, schedules, SPOF, audit, alerts, whoami;
 * - `halt`: the global halt (anyone who can see can stop);
 * - `fault:write`: ad-hoc faults; `run:write`: plan, run, abort; `schedule:write`: schedules;
 * - `admin`: unhalt, tokens, agent revocation, join tokens;
 * - `alerts:push`: the Alertmanager webhook.
 */
export const PERMISSIONS = ["public", "read", "halt", "fault:write", "run:write", "schedule:write", "admin", "alerts:push"] as const;
/** A permission. */
export type Permission = (typeof PERMISSIONS)[number];

/** What each role may do. */
export const ROLE_PERMISSIONS: Readonly<Record<Role, readonly Permission[]>> = {
  viewer: ["read", "halt"],
  operator: ["read", "halt", "fault:write", "run:write", "schedule:write"],
  admin: ["read", "halt", "fault:write", "run:write", "schedule:write", "admin"],
  alertmanager: ["alerts:push"],
};

/** Whether `role` grants `permission` (`public` is granted to everyone). */
export function roleAllows(role: Role, permission: Permission): boolean {
  return permission === "public" || ROLE_PERMISSIONS[role].includes(permission);
}

/** The kind of principal. */
export type PrincipalKind = "person" | "service";

/** The authenticated caller of a request. */
export interface Caller {
  /** The principal's name: the actor recorded for everything this caller does. */
  name: string;
  principalId: string;
  kind: PrincipalKind;
  role: Role;
  tokenId: string;
  /** The token's scope (a label selector) in its text form, or null when unscoped. */
  scope: string | null;
}
