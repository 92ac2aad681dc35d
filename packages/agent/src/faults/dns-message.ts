/**
 * The little of the DNS wire format (RFC 1035 §4.1) dns-fault needs: a query's header and its one
 * question, read within fixed bounds, and an answer made of that header and question with another
 * response code. Nothing else of a message is read or written.
 */

/** The largest DNS query over UDP dns-fault accepts (RFC 1035's 512 bytes; queries are far smaller). */
export const MAX_UDP_QUERY_BYTES = 512;
/** The largest DNS message over TCP (its two-byte length prefix). */
export const MAX_TCP_MESSAGE_BYTES = 65_535;
/** A name's longest wire form (RFC 1035 §2.3.4). */
export const MAX_NAME_WIRE_BYTES = 255;

const HEADER_BYTES = 12;
const OPCODE_QUERY = 0;

/** Response codes dns-fault answers with. */
export const RCODE = { SERVFAIL: 2, NXDOMAIN: 3 } as const;

/** What a query asks, as far as dns-fault is concerned. */
export interface DnsQuestion {
  /** The query's id. */
  id: number;
  /**
   * The name asked for, in text: lower case, no trailing dot ("" for the root); bytes other than
   * letters, digits, `-` and `_` written as `\DDD`, so that they never match a domain glob.
   */
  name: string;
  qtype: number;
  qclass: number;
  /** Where the question ends: bytes 0..end are the header and the question. */
  end: number;
}

/** Why a message is not a query dns-fault can answer (it is forwarded as it is, or dropped). */
export type NotAQuestion = "short" | "response" | "opcode" | "qdcount" | "name" | "truncated";

function isPlain(byte: number): boolean {
  return (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte === 0x2d || byte === 0x5f;
}

/**
 * Reads the header and the one question of a standard query. Work and memory are bounded by the
 * name's 255 bytes. Returns why not when the message is not one (a response, another opcode, zero
 * or several questions, a compressed or over-long name, cut short).
 */
export function parseQuestion(msg: Uint8Array): DnsQuestion | NotAQuestion {
  if (msg.length < HEADER_BYTES) return "short";
  const flags = (msg[2]! << 8) | msg[3]!;
  if (flags & 0x8000) return "response";
  if (((flags >> 11) & 0xf) !== OPCODE_QUERY) return "opcode";
  const qdcount = (msg[4]! << 8) | msg[5]!;
  if (qdcount !== 1) return "qdcount";
  const labels: string[] = [];
  let at = HEADER_BYTES;
  for (;;) {
    if (at >= msg.length) return "truncated";
    const len = msg[at]!;
    // 0xC0: a compression pointer, 0x40/0x80: reserved label types; none belongs in a query's name.
    if (len & 0xc0) return "name";
    at += 1;
    if (len === 0) break;
    if (at + len > msg.length) return "truncated";
    if (at + len - HEADER_BYTES > MAX_NAME_WIRE_BYTES) return "name";
    let label = "";
    for (let i = at; i < at + len; i++) {
      let b = msg[i]!;
      if (b >= 0x41 && b <= 0x5a) b += 0x20; // ASCII upper to lower case: names match without regard to case
      label += isPlain(b) ? String.fromCharCode(b) : `\\${String(b).padStart(3, "0")}`;
    }
    labels.push(label);
    at += len;
  }
  if (at - HEADER_BYTES > MAX_NAME_WIRE_BYTES) return "name";
  if (at + 4 > msg.length) return "truncated";
  const qtype = (msg[at]! << 8) | msg[at + 1]!;
  const qclass = (msg[at + 2]! << 8) | msg[at + 3]!;
  return { id: (msg[0]! << 8) | msg[1]!, name: labels.join("."), qtype, qclass, end: at + 4 };
}

/**
 * The answer to a query with `rcode` and nothing else: the query's id, opcode, RD and CD bits,
 * QR and RA set, the question as it was asked (its case included), no records.
 */
export function faultAnswer(query: Uint8Array, question: DnsQuestion, rcode: number): Buffer {
  const out = Buffer.alloc(question.end);
  out.set(query.subarray(0, question.end));
  const rd = query[2]! & 0x01;
  const opcode = query[2]! & 0x78;
  const cd = query[3]! & 0x10;
  out[2] = 0x80 | opcode | rd; // QR, opcode, AA=0, TC=0, RD as asked
  out[3] = 0x80 | cd | (rcode & 0x0f); // RA, Z=0, AD=0, CD as asked
  out.writeUInt16BE(1, 4); // QDCOUNT
  out.writeUInt16BE(0, 6); // ANCOUNT
  out.writeUInt16BE(0, 8); // NSCOUNT
  out.writeUInt16BE(0, 10); // ARCOUNT
  return out;
}

/** The id of a message (its first two bytes); undefined when it is shorter than a header. */
export function messageId(msg: Uint8Array): number | undefined {
  return msg.length >= HEADER_BYTES ? (msg[0]! << 8) | msg[1]! : undefined;
}

/** A copy of `msg` with another id. */
export function withId(msg: Uint8Array, id: number): Buffer {
  const out = Buffer.from(msg);
  out.writeUInt16BE(id & 0xffff, 0);
  return out;
}
