/**
 * The names and addresses the HTTP API answers to. A request whose `Host` is anything else is
 * refused: a browser tricked by DNS rebinding into calling a loopback API sends the attacker's name.
 */
import { hostname, networkInterfaces } from "node:os";

/** Options of {@link createHostPolicy}. */
export interface HostPolicyOptions {
  /** The address the API is bound to (a wildcard means every local address). */
  bindHost: string;
  /** Extra names the server is reached by (`--advertise`): DNS names, addresses. */
  advertise?: readonly string[];
}

/** Which `Host` headers are accepted. */
export interface HostPolicy {
  /** Whether a `Host` header value (`name`, `name:port`, `[v6]:port`) names this server. */
  allows(hostHeader: string | undefined): boolean;
  /** The accepted names, sorted (for logs and `--advertise` hints). */
  names(): string[];
}

const WILDCARDS = new Set(["0.0.0.0", "::", "[::]", ""]);

/** The host part of a Host header, lower-case, without brackets, port or a trailing dot. */
export function hostOf(header: string): string {
  let h = header.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    return end < 0 ? h : h.slice(1, end);
  }
  const colon = h.indexOf(":");
  // More than one colon without brackets: a bare IPv6 address.
  if (colon >= 0 && h.indexOf(":", colon + 1) < 0) h = h.slice(0, colon);
  return h.endsWith(".") ? h.slice(0, -1) : h;
}

/** Builds the policy from the bind address, the machine's names and `--advertise`. */
export function createHostPolicy(options: HostPolicyOptions): HostPolicy {
  const names = new Set<string>(["localhost", "127.0.0.1", "::1"]);
  const bind = options.bindHost.replace(/^\[|\]$/g, "").toLowerCase();
  if (WILDCARDS.has(bind)) {
    names.add(hostname().toLowerCase());
    for (const list of Object.values(networkInterfaces())) {
      for (const info of list ?? []) names.add(info.address.toLowerCase().replace(/%.*$/, ""));
    }
  } else {
    names.add(bind);
  }
  for (const name of options.advertise ?? []) names.add(hostOf(name));
  return {
    allows(header) {
      if (header === undefined || header.length > 300) return false;
      const host = hostOf(header);
      return names.has(host) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
    },
    names: () => [...names].sort(),
  };
}
