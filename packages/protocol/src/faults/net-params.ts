/**
 * Parameters shared by the network fault kinds: destination CIDRs, remote ports and direction.
 * Everything here is pure (no host access), so the control plane and the agent validate alike.
 */
import type { JsonValue } from "@bufbuild/protobuf";
import type { ParamReader } from "../params.js";

/** An IP family. */
export type IpFamily = 4 | 6;

/** A parsed CIDR block. `first`/`last` are the numeric bounds of the block. */
export interface CidrBlock {
  family: IpFamily;
  prefix: number;
  first: bigint;
  last: bigint;
  /** Canonical text: `10.0.0.0/8`, `2001:db8::/32`. */
  text: string;
}

/** Which traffic a network fault acts on, seen from the host. */
export type NetworkDirection = "egress" | "ingress" | "both";
/** The allowed directions. */
export const NETWORK_DIRECTIONS: readonly NetworkDirection[] = ["egress", "ingress", "both"];

const BITS: Record<IpFamily, number> = { 4: 32, 6: 128 };

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (!/^(0|[1-9]\d{0,2})$/.test(part)) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || text.length > 45) return undefined;
  let head = text;
  let tail4: bigint | undefined;
  // An embedded IPv4 address (::ffff:10.0.0.1) takes the last two groups.
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    tail4 = parseIpv4(text.slice(lastColon + 1));
    if (tail4 === undefined) return undefined;
    head = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string): string[] => (s === "" ? [] : s.split(":"));
  const left = groupsOf(halves[0]!);
  const right = halves.length === 2 ? groupsOf(halves[1]!) : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...right];
  let value = 0n;
  for (const g of groups) {
    if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return undefined;
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  if (tail4 !== undefined) value = (value & ~0xffffffffn) | tail4;
  return value;
}

/** Parses an IPv4 or IPv6 address (no zone, no brackets). */
export function parseIp(text: string): { family: IpFamily; value: bigint } | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  if (!text.includes(":")) return undefined;
  const v6 = parseIpv6(text);
  return v6 === undefined ? undefined : { family: 6, value: v6 };
}

/** Formats an address: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run as `::`). */
export function formatIp(family: IpFamily, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join(".");
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/**
 * Parses `addr/prefix` or a bare address (a /32 or /128).
 * Returns an error message instead when the text is not a CIDR or has host bits set.
 */
export function parseCidr(text: string): CidrBlock | { error: string } {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addrText);
  const notCidr = { error: `${JSON.stringify(text)} is not an IPv4/IPv6 address or CIDR (e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)` };
  if (!ip) return notCidr;
  const bits = BITS[ip.family];
  let prefix = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) {
      return { error: `${JSON.stringify(text)} has an invalid prefix length; use 0-${bits} for IPv${ip.family}` };
    }
    prefix = Number(p);
  }
  const hostBits = BigInt(bits - prefix);
  const hostMask = (1n << hostBits) - 1n;
  const first = ip.value & ~hostMask;
  const canonical = `${formatIp(ip.family, first)}/${prefix}`;
  if ((ip.value & hostMask) !== 0n) {
    return {
      error: `${JSON.stringify(text)} has host bits set; use the network ${canonical}, or ${formatIp(ip.family, ip.value)}/${bits} for the one address`,
    };
  }
  return { family: ip.family, prefix, first, last: first | hostMask, text: canonical };
}

/** Whether block `a` contains block `b`. */
export function cidrContains(a: CidrBlock, b: CidrBlock): boolean {
  return a.family === b.family && a.first <= b.first && b.last <= a.last;
}

function listOf(raw: JsonValue): JsonValue[] {
  if (typeof raw === "string") return raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (Array.isArray(raw)) return raw;
  return [raw];
}

/**
 * Reads `destinations`: a list of CIDRs or addresses (JSON array, or a comma-separated string).
 * Returns canonical blocks, duplicates and blocks inside another one removed; undefined when absent.
 */
export function readDestinations(reader: ParamReader, opts: { max: number }): CidrBlock[] | undefined {
  const raw = reader.raw("destinations");
  if (raw === undefined) return undefined;
  const items = listOf(raw);
  if (items.length === 0) {
    reader.fail("destinations", "is empty; leave it out to act on every destination, or list CIDRs such as 10.0.0.0/8");
    return undefined;
  }
  if (items.length > opts.max) {
    reader.fail("destinations", `has ${items.length} entries; at most ${opts.max} are allowed (use wider CIDRs)`);
    return undefined;
  }
  const blocks: CidrBlock[] = [];
  const errors: string[] = [];
  for (const item of items) {
    if (typeof item !== "string") {
      errors.push(`${JSON.stringify(item)} is not a CIDR string`);
      continue;
    }
    const parsed = parseCidr(item.trim());
    if ("error" in parsed) errors.push(parsed.error);
    else blocks.push(parsed);
  }
  if (errors.length > 0) {
    reader.fail("destinations", errors.join("; "));
    return undefined;
  }
  return minimizeBlocks(blocks);
}

/** Removes duplicates and blocks contained in another block; sorted by family, then address. */
export function minimizeBlocks(blocks: CidrBlock[]): CidrBlock[] {
  const sorted = [...blocks].sort((a, b) => a.family - b.family || (a.first < b.first ? -1 : a.first > b.first ? 1 : a.prefix - b.prefix));
  const kept: CidrBlock[] = [];
  for (const block of sorted) {
    if (!kept.some((k) => cidrContains(k, block))) kept.push(block);
  }
  return kept;
}

/**
 * Reads `ports`: remote TCP/UDP ports 1-65535 (JSON array of numbers or strings, a single number,
 * or a comma-separated string). Sorted, duplicates removed; undefined when absent.
 */
export function readPorts(reader: ParamReader, opts: { max: number }): number[] | undefined {
  const raw = reader.raw("ports");
  if (raw === undefined) return undefined;
  const items = listOf(raw);
  if (items.length === 0) {
    reader.fail("ports", "is empty; leave it out to act on every port, or list ports such as 443,8080");
    return undefined;
  }
  if (items.length > opts.max) {
    reader.fail("ports", `has ${items.length} entries; at most ${opts.max} are allowed`);
    return undefined;
  }
  const ports: number[] = [];
  const bad: string[] = [];
  for (const item of items) {
    const n = typeof item === "string" && /^\d+$/.test(item.trim()) ? Number(item.trim()) : item;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535) bad.push(JSON.stringify(item));
    else ports.push(n);
  }
  if (bad.length > 0) {
    reader.fail("ports", `${bad.join(", ")} ${bad.length === 1 ? "is not a port" : "are not ports"}; use whole numbers 1-65535`);
    return undefined;
  }
  return [...new Set(ports)].sort((a, b) => a - b);
}

/** Reads `direction`: egress (default), ingress or both. */
export function readDirection(reader: ParamReader, fallback: NetworkDirection = "egress"): NetworkDirection {
  return (reader.string("direction", { oneOf: NETWORK_DIRECTIONS, default: fallback }) ?? fallback) as NetworkDirection;
}

/** Linux interface names: 1-15 characters, no slash, colon or white space. */
export const INTERFACE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,15}$/;
