/** Identity and access: tokens, principals, roles, scopes, the audit log and the HTTP hooks. */
export { ROLES, PERMISSIONS, ROLE_PERMISSIONS, roleAllows } from "./types.js";
export type { Caller, Permission, PrincipalKind, Role } from "./types.js";
export { TOKEN_PREFIX, generateToken, parseToken } from "./tokens.js";
export { createIdentityStore } from "./identity-store.js";
export type { AuthFailure, AuthResult, IdentityStore, NewTokenInput, PrincipalRecord, TokenRecord, TokenState } from "./identity-store.js";
export { AUDIT_GENESIS, auditHash, createAuditLog } from "./audit.js";
export type { AuditEntry, AuditInput, AuditLog, AuditQuery, AuditVerification } from "./audit.js";
export { ADMIN_TOKEN_FILE, BOOTSTRAP_ADMIN, ensureBootstrapAdmin, resetAdminToken, writeSecretFile } from "./bootstrap.js";
export { createHostPolicy, hostOf } from "./hosts.js";
export type { HostPolicy, HostPolicyOptions } from "./hosts.js";
export { callerOf, installAuth } from "./http.js";
export type { AuthHooks, AuthHooksOptions, CredentialSource, RouteEntry } from "./http.js";
export { CSRF_HEADER, MAX_SESSIONS, SESSION_COOKIE, SESSION_IDLE_MS, createSessionStore, csrfMatches, readCookie } from "./session.js";
export type { NewSession, Session, SessionCheck, SessionStore, SessionStoreOptions } from "./session.js";
export { parseRelative, registerAuthRoutes, toAuditJson, toTokenJson } from "./routes.js";
export type { AuditJson, TokenJson } from "./routes.js";
export { ScopeError, formatScope, parseScope, scopeViolation } from "./scope.js";
export type { Scope } from "./scope.js";
