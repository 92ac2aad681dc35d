/** Parsing and formatting of `host:port` listen addresses. */

/** A listen address split into host and port. */
export interface HostPort {
  host: string;
  port: number;
}

/**
 * Parses `host:port` or `[ipv6]:port`. Port 0 asks the OS for an ephemeral port.
 * Returns undefined when the text is not such an address.
 */
export function parseHostPort(text: string): HostPort | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text.trim());
  if (!match) return undefined;
  const host = match[1] ?? match[2];
  const port = Number(match[3]);
  if (host === undefined || port > 65535) return undefined;
  return { host, port };
}

/** Formats host and port as `host:port`, bracketing IPv6 hosts. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether a host name or address only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
